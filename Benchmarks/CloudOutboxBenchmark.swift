import DeviceKeys
import Foundation
import ParticleCloud
import Registry
import Simulator

/// The cloud outbox against the simulated Particle cloud (in-process `SimulatedCloud` on
/// loopback, the server `keyline-sim cloud` runs): uploads per second with 1 and 16 in flight,
/// and the drain of 10,000 queued uploads (time, and the growth of the peak resident size).
/// Each upload is two calls (product membership, then the key), as the line makes them.
enum CloudOutboxBenchmark {
    static let product = "12346"
    static let token = "bench-token"

    static func run() async throws {
        let base = ConnectionSettings.fromEnvironment()
        let name = "kl_cloud_" + String((0..<8).map { _ in "abcdefghijklmnopqrstuvwxyz0123456789".randomElement()! })
        let admin = try await PostgresConnection.connect(base)
        try await admin.execute("CREATE DATABASE \(name)")
        let cloud = try SimulatedCloud(token: token)
        let server = try await SimulatedCloudServer(cloud: cloud)
        do {
            try await measure(settings: base.with(database: name), url: server.url)
        } catch {
            await server.stop()
            _ = try? await admin.execute("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
            throw error
        }
        await server.stop()
        try await admin.execute("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
    }

    static func measure(settings: ConnectionSettings, url: String) async throws {
        let connection = try await PostgresConnection.connect(settings)
        try await MigrationRunner(connection: connection).migrate()
        let setup = RegistryDatabase(client: connection)
        _ = try await setup.createProduct(id: product, name: "Benchmark product", platform: "boron")
        let registry = try await RegistryDatabase.connect(settings, connections: 16)
        let client = ParticleCloudClient(api: try ParticleAPIBase(url), token: try ParticleAccessToken(token))
        var next = 0
        let clock = ContinuousClock()

        func drain(_ count: Int, inFlight: Int) async throws -> (seconds: Double, sent: Int) {
            try await queue(count, from: next, connection: connection)
            next += count
            let drainer = CloudOutboxDrainer(registry: registry, client: client, station: "bench", inFlight: inFlight)
            let start = clock.now
            let tally = try await drainer.drain(until: .now + .seconds(3600))
            let elapsed = clock.now - start
            return (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18, tally.sent)
        }

        let one = try await drain(300, inFlight: 1)
        let sixteen = try await drain(2_000, inFlight: 16)
        let rateOne = Double(one.sent) / one.seconds, rateSixteen = Double(sixteen.sent) / sixteen.seconds
        print(String(format: "  uploads/s, 1 in flight:  %.0f (%d uploads)", rateOne, one.sent))
        print(String(format: "  uploads/s, 16 in flight: %.0f (%d uploads), %.1f× the rate of 1", rateSixteen, sixteen.sent,
                     rateSixteen / rateOne))
        let before = peakResidentKiB()
        let backlog = try await drain(10_000, inFlight: 16)
        let after = peakResidentKiB()
        print(String(format: "  drain of 10,000 queued uploads (16 in flight): %.1f s, %.0f uploads/s; peak resident size grew by %d KiB (from %d KiB)",
                     backlog.seconds, Double(backlog.sent) / backlog.seconds, max(0, after - before), before))
        await connection.close()
    }

    /// `count` registered EC keys (Borons) with their escrow records and queued uploads, in one transaction.
    static func queue(_ count: Int, from first: Int, connection: PostgresConnection) async throws {
        let keys = try (0..<count).map { _ in try DevicePrivateKey.generate(.ec).publicKey.spkiDER }
        let product = self.product
        try await connection.transaction(isolation: .readCommitted) { transaction in
            for (offset, spki) in keys.enumerated() {
                let deviceID = String(format: "e00fce68%016x", first + offset)
                let object = try transaction.queryOne("""
                    INSERT INTO escrow_objects (product_id, device_id, public_key_sha256, store_uri, object_key,
                                                ciphertext_sha256, size_bytes, recipients, station)
                    VALUES ($1, $2, encode(sha256($3), 'hex'), 'file:///bench', $4,
                            repeat('ab', 32), 400, ARRAY['age1bench'], 'bench') RETURNING id
                    """, [product, deviceID, PostgresValue.bytea(spki), "\(product)/\(deviceID).age"])
                let registration = try transaction.queryOne("""
                    INSERT INTO key_registrations (product_id, device_id, algorithm, spki_der, fingerprint, escrow_object_id, station)
                    VALUES ($1, $2, 'ec', $3, encode(sha256($3), 'hex'), $4, 'bench') RETURNING id, fingerprint::text AS fingerprint
                    """, [product, deviceID, PostgresValue.bytea(spki), try object!.decode("id", as: Int64.self)])!
                _ = try transaction.execute("""
                    INSERT INTO cloud_uploads (registration_id, product_id, device_id, fingerprint, algorithm)
                    VALUES ($1, $2, $3, $4, 'ec')
                    """, [try registration.decode("id", as: Int64.self), product, deviceID,
                          try registration.decode("fingerprint", as: String.self)])
            }
        }
    }

    /// getrusage's ru_maxrss (KiB on Linux): the process's peak resident size so far.
    static func peakResidentKiB() -> Int {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return usage.ru_maxrss
    }
}
