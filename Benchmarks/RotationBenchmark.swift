import Age
import Custody
import DeviceKeys
import Escrow
import EscrowS3
import Foundation
import Registry

/// Custody rotation throughput: backups moved to a new epoch per second (fetch and hash-check,
/// decrypt under the old epoch, re-encrypt, write-ahead intent, write-once put, then the object,
/// the new generation and its event in one transaction), for a directory store (fsync of file and
/// folder) and the local S3 server (moto; KEYLINE_TEST_S3_ENDPOINT), in a fresh database of the
/// `make db-up` cluster. moto is a Python test server: its figure bounds keyline from below.
enum RotationBenchmark {
    static let count = 300

    static func run() async throws {
        let base = ConnectionSettings.fromEnvironment()
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("keyline-bench-rotate-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        var stores: [(String, String)] = [("directory", scratch.appendingPathComponent("store").path)]
        if let endpoint = ProcessInfo.processInfo.environment["KEYLINE_TEST_S3_ENDPOINT"], !endpoint.isEmpty {
            // The rotation opens each object's recorded store from the environment, as keyline does.
            for (name, value) in ["AWS_ENDPOINT_URL": endpoint, "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "keyline-bench",
                                  "AWS_SECRET_ACCESS_KEY": "keyline-bench"] { setenv(name, value, 1) }
            let bucket = "kl-rotate-\(UUID().uuidString.prefix(8).lowercased())"
            let store = try S3EscrowStore(uri: "s3://\(bucket)/escrow", environment: ProcessInfo.processInfo.environment)
            try await store.createBucket()
            stores.append(("s3 (moto at \(endpoint))", "s3://\(bucket)/escrow"))
        } else {
            print("KEYLINE_TEST_S3_ENDPOINT unset: directory store only")
        }
        for (name, location) in stores {
            let database = "kl_bench_rot_" + String((0..<8).map { _ in "abcdefghijklmnopqrstuvwxyz0123456789".randomElement()! })
            let admin = try await PostgresConnection.connect(base)
            try await admin.execute("CREATE DATABASE \(database)")
            let settings = base.with(database: database)
            let setup = try await PostgresConnection.connect(settings)
            try await MigrationRunner(connection: setup).migrate()
            await setup.close()
            let registry = try await RegistryDatabase.connect(settings, connections: 8)
            let measured: Result<Double, any Error>
            do {
                measured = .success(try await rotate(registry, store: try EscrowStores.open(location),
                                                     folder: scratch.appendingPathComponent(database).path))
            } catch {
                measured = .failure(error)
            }
            _ = try? await admin.execute("DROP DATABASE IF EXISTS \(database) WITH (FORCE)")
            await admin.close()
            let seconds = try measured.get()
            print(String(format: "%@: %d backups rotated, 8 at a time: %6.0f objects/s", name, count, Double(count) / seconds))
        }
    }

    /// Makes an epoch, escrows and registers `count` EC keys under it in `store`, then times one
    /// rotation to a new epoch; returns its wall-clock seconds.
    static func rotate(_ registry: RegistryDatabase, store: any EscrowStore, folder: String) async throws -> Double {
        let custodians = (0..<3).map { (name: "custodian\($0)", identity: X25519Identity.generate()) }
        let ceremonies = EpochCeremonies(registry: registry, station: "bench")
        let created = try await ceremonies.create(name: "bench-1", threshold: 2,
                                                  custodians: custodians.map { Custodian(name: $0.name, recipient: $0.identity.recipient) },
                                                  folder: folder + "-1")
        let recipient = try X25519Recipient(created.epoch.recipient)
        _ = try await registry.createProduct(id: "bench", name: "Rotation benchmark")
        for index in 0..<count {
            let key = try DevicePrivateKey.generate(.ec)
            let deviceID = String(format: "e00fce68%016x", index)
            let backup = try EscrowBackup(deviceID: deviceID, platform: "boron", product: "bench", privateKey: key,
                                          job: "bench", station: "bench")
            let ciphertext = try backup.encrypt(to: [recipient])
            let sha256 = try await store.put(ciphertext, at: backup.objectKey)
            let object = try await registry.recordEscrowObject(NewEscrowObject(
                productID: "bench", deviceID: deviceID, publicKeySHA256: key.publicKey.fingerprint, storeURI: store.storeURI,
                objectKey: backup.objectKey.path, ciphertextSHA256: sha256, sizeBytes: Int64(ciphertext.count),
                recipients: [recipient.description], jobID: nil, station: "bench"))
            _ = try await registry.registerKey(NewKeyRegistration(
                productID: "bench", deviceID: deviceID, algorithm: .ec, spkiDER: key.publicKey.spkiDER,
                fingerprint: key.publicKey.fingerprint, escrowObjectID: object.id, jobID: nil, station: "bench"))
        }
        let old = try await ShareRecovery(registry: registry, identities: custodians.map(\.identity))
            .recover(Array(created.shareFiles.prefix(2)))
        let rotation = EscrowRotation(registry: registry, station: "bench")
        let (_, ceremony) = try await rotation.start(from: old, newEpochName: "bench-2", threshold: 2,
                                                     custodians: custodians.map { Custodian(name: $0.name, recipient: $0.identity.recipient) },
                                                     folder: folder + "-2", productID: nil)
        let start = ContinuousClock.now
        let summary = try await rotation.run(ceremony, old: old)
        let elapsed = ContinuousClock.now - start
        guard summary.rotated == count, summary.failures.isEmpty else {
            throw CustodyError.backupRefused(deviceID: "-", objectKey: "-", detail: "rotated \(summary.rotated) of \(count): \(summary.failures.prefix(3))")
        }
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }
}
