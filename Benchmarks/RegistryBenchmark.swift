import Foundation
import Registry

/// Key registrations committed per second in PostgreSQL: one per transaction (what a station
/// does per device: insert, job-device state change and event, then COMMIT), batched, and from
/// four stations at once. Uses a fresh database in the cluster `DATABASE_URL`/`PG*`/`make db-up`
/// points at (the login must be able to create databases), dropped afterwards.
func registryBenchmark() async throws {
    let base = ConnectionSettings.fromEnvironment()
    let name = "kl_bench_" + String((0..<8).map { _ in "abcdefghijklmnopqrstuvwxyz0123456789".randomElement()! })
    let admin = try await PostgresConnection.connect(base)
    try await admin.execute("CREATE DATABASE \(name)")
    do {
        try await measureRegistrations(settings: base.with(database: name), keyMaterialSeed: name)
    } catch {
        _ = try? await admin.execute("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
        throw error
    }
    try await admin.execute("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
}

private func measureRegistrations(settings: ConnectionSettings, keyMaterialSeed name: String) async throws {
    let clock = ContinuousClock()
    print("  database: \(settings.description)")
    let setupConnection = try await PostgresConnection.connect(settings)
    let setup = RegistryDatabase(client: setupConnection)
    try await MigrationRunner(connection: setupConnection).migrate()
    _ = try await setup.createProduct(id: "bench", name: "Benchmark product")
    let job = try await setup.createJob(productID: "bench", station: "bench", pipeline: "bench")

    /// `count` devices taken to `escrowed` in bulk, with distinct keys and their escrow objects.
    var nextDevice = 0
    func escrowedDevices(_ count: Int) async throws -> [NewKeyRegistration] {
        let first = nextDevice + 1
        nextDevice += count
        let rows = try await setupConnection.transaction { transaction in
            // Devices enter a job as `detected` and move one state at a time (the schema's trigger).
            try transaction.execute("""
                INSERT INTO job_devices (job_id, device_id, state, station)
                SELECT $1, lpad(to_hex(i), 24, '0'), 'detected', 'bench' FROM generate_series($2::integer, $3::integer) i
                """, [job.id, first, first + count - 1])
            for (from, to) in [("detected", "dfu"), ("dfu", "flashed"), ("flashed", "server_key")] {
                try transaction.execute("UPDATE job_devices SET state = $3 WHERE job_id = $1 AND state = $2",
                                        [job.id, from, to])
            }
            try transaction.execute("""
                UPDATE job_devices d SET state = 'key_ready', key_fingerprint = encode(sha256(k.k), 'hex')
                FROM (SELECT lpad(to_hex(i), 24, '0') AS device_id, sha512(convert_to($4::text || i, 'UTF8')) AS k
                      FROM generate_series($2::integer, $3::integer) i) k
                WHERE d.job_id = $1 AND d.device_id = k.device_id AND d.state = 'server_key'
                """, [job.id, first, first + count - 1, name])
            try transaction.execute("""
                INSERT INTO escrow_objects (product_id, device_id, public_key_sha256, store_uri, object_key,
                                            ciphertext_sha256, size_bytes, recipients, job_id, station)
                SELECT 'bench', lpad(to_hex(i), 24, '0'), encode(sha256(k), 'hex'), 'file:///bench',
                       'bench/' || lpad(to_hex(i), 24, '0') || '/' || encode(sha256(k), 'hex') || '.age',
                       encode(sha256(k || k), 'hex'), 400, ARRAY['age1bench'], $1, 'bench'
                FROM (SELECT i, sha512(convert_to($4::text || i, 'UTF8')) AS k
                      FROM generate_series($2::integer, $3::integer) i) keys
                """, [job.id, first, first + count - 1, name])
            try transaction.execute("""
                UPDATE job_devices SET state = 'escrowed' WHERE job_id = $1 AND state = 'key_ready'
                """, [job.id])
            return try transaction.query("""
                SELECT e.id, e.device_id, keys.k AS spki, e.public_key_sha256
                FROM (SELECT i, lpad(to_hex(i), 24, '0') AS device_id, sha512(convert_to($4::text || i, 'UTF8')) AS k
                      FROM generate_series($2::integer, $3::integer) i) keys
                JOIN escrow_objects e ON e.device_id = keys.device_id AND e.job_id = $1
                ORDER BY keys.i
                """, [job.id, first, first + count - 1, name])
        }
        return try rows.map { row in
            NewKeyRegistration(productID: "bench", deviceID: try row.decode("device_id"), algorithm: .ec,
                               spkiDER: try row.decode("spki"), fingerprint: try row.decode("public_key_sha256"),
                               escrowObjectID: try row.decode("id"), jobID: job.id, station: "bench")
        }
    }

    func report(_ label: String, _ count: Int, _ elapsed: Duration) -> Double {
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let perSecond = Double(count) / seconds
        print("  \(label): \(String(format: "%.0f", perSecond)) registrations/s (\(count) in \(elapsed))")
        return perSecond
    }

    let count = 1000
    let single = try await escrowedDevices(count)
    var start = clock.now
    for registration in single { _ = try await setup.registerKey(registration) }
    let oneRate = report("one per transaction", count, clock.now - start)

    let batchSize = 50
    let batched = try await escrowedDevices(count)
    start = clock.now
    for offset in stride(from: 0, to: count, by: batchSize) {
        _ = try await setup.registerKeys(Array(batched[offset..<min(offset + batchSize, count)]))
    }
    let batchRate = report("batched, \(batchSize) per transaction", count, clock.now - start)

    let stations = 4
    let parallel = try await escrowedDevices(count)
    var connections: [RegistryDatabase] = []
    for _ in 0..<stations { connections.append(try await RegistryDatabase.connect(settings)) }
    start = clock.now
    try await withThrowingTaskGroup(of: Void.self) { group in
        for (index, registry) in connections.enumerated() {
            let share = stride(from: index, to: count, by: stations).map { parallel[$0] }
            group.addTask { for registration in share { _ = try await registry.registerKey(registration) } }
        }
        try await group.waitForAll()
    }
    let parallelRate = report("one per transaction, \(stations) stations at once", count, clock.now - start)

    // The way a station's device tasks share the database: one registry over a small pool.
    let tasks = 16
    let pooled = try await escrowedDevices(count)
    let poolRegistry = try await RegistryDatabase.connect(settings, connections: stations)
    start = clock.now
    try await withThrowingTaskGroup(of: Void.self) { group in
        for index in 0..<tasks {
            let share = stride(from: index, to: count, by: tasks).map { pooled[$0] }
            group.addTask { for registration in share { _ = try await poolRegistry.registerKey(registration) } }
        }
        try await group.waitForAll()
    }
    let poolRate = report("one per transaction, \(tasks) device tasks over a pool of \(stations)", count, clock.now - start)

    let total = try await setupConnection.query("SELECT count(*) AS n FROM key_registrations")
    print("  registered: \(try total[0].decode("n", as: Int.self)) keys")
    print(String(format: "  ratios: batched/single %.1fx; %d stations/single %.1fx; pooled/single %.1fx",
                 batchRate / oneRate, stations, parallelRate / oneRate, poolRate / oneRate))
}
