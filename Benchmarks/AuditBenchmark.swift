import Foundation
import Registry

/// `keyline audit` time and peak memory at 100k and 1M registrations (KEYLINE_AUDIT_BENCH_SIZES
/// overrides, e.g. `10000,100000`). A fresh database in the cluster `PG*`/`make db-up` points at
/// is filled by set-based SQL (generate_series) with synthetic jobs, job devices, escrow objects
/// and registrations, then the release `keyline audit` (next to keyline-bench) runs on it as a
/// child process, CSV to /dev/null; its peak RSS comes from wait4(2). KEYLINE_AUDIT_BENCH_BASELINE
/// names another keyline binary to audit the same data in the same run (a before/after ratio).
func auditBenchmark() async throws {
    let sizes = (ProcessInfo.processInfo.environment["KEYLINE_AUDIT_BENCH_SIZES"] ?? "100000,1000000")
        .split(separator: ",").compactMap { Int($0) }.sorted()
    let base = ConnectionSettings.fromEnvironment()
    let name = "kl_audit_bench_" + String((0..<8).map { _ in "abcdefghijklmnopqrstuvwxyz0123456789".randomElement()! })
    let admin = try await PostgresConnection.connect(base)
    try await admin.execute("CREATE DATABASE \(name)")
    defer { Task { _ = try? await admin.execute("DROP DATABASE IF EXISTS \(name) WITH (FORCE)") } }
    let connection = try await PostgresConnection.connect(base.with(database: name))
    try await MigrationRunner(connection: connection).migrate()
    try await connection.execute("INSERT INTO products (id, name) VALUES ('bench', 'Audit benchmark')")
    let keyline = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        .appendingPathComponent("keyline").path
    // KEYLINE_AUDIT_BENCH_BASELINE: another keyline binary (e.g. an earlier release) audited on
    // the same data in the same run, for a before/after ratio.
    let baseline = ProcessInfo.processInfo.environment["KEYLINE_AUDIT_BENCH_BASELINE"].flatMap { $0.isEmpty ? nil : $0 }
    var generated = 0
    for size in sizes where size > generated {
        let started = ContinuousClock.now
        try await AuditBenchmarkData.generate(connection, from: generated + 1, to: size)
        generated = size
        let generation = ContinuousClock.now - started
        print(String(format: "  %8d registrations generated in %.1f s",
                     size, Double(generation.components.seconds) + Double(generation.components.attoseconds) / 1e18))
        let (seconds, peakKB, status) = try AuditBenchmarkData.runAudit(keyline, database: name)
        print(String(format: "  %8d registrations: audit %.2f s (%.0f rows/s), peak RSS %.1f MB, exit %d",
                     size, seconds, Double(size) / seconds, Double(peakKB) / 1024, status))
        if let baseline {
            let (before, beforeKB, beforeStatus) = try AuditBenchmarkData.runAudit(baseline, database: name)
            print(String(format: "  %8d registrations: baseline %.2f s, peak RSS %.1f MB, exit %d; this keyline takes %.2f× the baseline's time",
                         size, before, Double(beforeKB) / 1024, beforeStatus, seconds / before))
        }
    }
    await connection.close()
}

enum AuditBenchmarkData {
    /// Devices `first...last`: one job per 10,000 devices, each device `done` with its escrow object
    /// and active registration. Triggers and foreign-key checks are skipped for the bulk load
    /// (session_replication_role = replica); CHECK constraints still hold every row.
    static func generate(_ connection: PostgresConnection, from first: Int, to last: Int) async throws {
        _ = try await connection.transaction { transaction in
            try transaction.execute("SET LOCAL session_replication_role = replica")
            try transaction.execute("""
                INSERT INTO jobs (product_id, station, pipeline, status, started_at, finished_at)
                SELECT 'bench', 'station-' || (j % 8), 'bench.yaml', 'completed', now(), now()
                FROM generate_series((SELECT coalesce(max(id), 0) + 1 FROM jobs)::bigint, ($1::bigint - 1) / 10000 + 1) j
                """, [last])
            try transaction.execute("""
                CREATE TEMP TABLE gen ON COMMIT DROP AS
                SELECT i, lpad(to_hex(i), 24, '0') AS device_id, (i - 1) / 10000 + 1 AS job_id,
                       decode(md5(i::text) || md5('k' || i), 'hex') AS spki
                FROM generate_series($1::bigint, $2::bigint) i
                """, [first, last])
            try transaction.execute("""
                INSERT INTO job_devices (job_id, device_id, state, station, platform, key_fingerprint, port_path)
                SELECT job_id, device_id, 'done', 'station-' || (job_id % 8), 'boron', encode(sha256(spki), 'hex'),
                       '1-1.' || (i % 16 + 1) FROM gen
                """)
            try transaction.execute("""
                INSERT INTO escrow_objects (id, product_id, device_id, public_key_sha256, store_uri, object_key,
                                            ciphertext_sha256, size_bytes, recipients, job_id, station)
                OVERRIDING SYSTEM VALUE
                SELECT i, 'bench', device_id, encode(sha256(spki), 'hex'), 'file:///bench-store',
                       'bench/' || device_id || '/' || encode(sha256(spki), 'hex') || '.age',
                       encode(sha256(spki || spki), 'hex'), 400, ARRAY['age1bench'], job_id, 'station-' || (job_id % 8)
                FROM gen
                """)
            try transaction.execute("""
                INSERT INTO key_registrations (product_id, device_id, algorithm, spki_der, fingerprint, escrow_object_id,
                                               job_id, station)
                SELECT 'bench', device_id, 'ec', spki, encode(sha256(spki), 'hex'), i, job_id, 'station-' || (job_id % 8)
                FROM gen
                """)
        }
        // VACUUM as autovacuum would after a bulk load: statistics, and the visibility map that
        // lets the audit's covering indexes answer without heap fetches.
        try await connection.execute("VACUUM ANALYZE")
    }

    /// Runs `keyline audit --product bench --format csv` to /dev/null; wall seconds, peak RSS (KiB), exit status.
    static func runAudit(_ keyline: String, database: String) throws -> (Double, Int, Int32) {
        var environment = ProcessInfo.processInfo.environment
        environment["PGDATABASE"] = database
        environment["DATABASE_URL"] = ""
        let arguments = [keyline, "audit", "--product", "bench", "--format", "csv"]
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var pid: pid_t = 0
        let started = Date()
        let spawned = posix_spawn(&pid, keyline, &actions, nil, argv, envp)
        guard spawned == 0 else { throw BenchmarkFailure("cannot run \(keyline): \(String(cString: strerror(spawned)))") }
        var status: Int32 = 0
        var usage = rusage()
        while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
        return (Date().timeIntervalSince(started), Int(usage.ru_maxrss), (status >> 8) & 0xff)
    }
}

