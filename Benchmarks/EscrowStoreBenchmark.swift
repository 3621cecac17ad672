import DeviceKeys
import Escrow
import Age
import EscrowS3
import Foundation

/// Escrow store throughput: sealed backups (RSA-1024, one recipient) written per second, 1 and 16
/// at a time, to the local S3 server (moto, `make s3-up`; KEYLINE_TEST_S3_ENDPOINT) and to a
/// directory store on the local disk (fsync of file and directory), in the same run. Each put is a
/// new object (a conditional put with its SHA-256 checksum on S3). moto is a Python test server:
/// its figure bounds keyline's client overhead from below, not what AWS S3 or MinIO would take.
enum EscrowStoreBenchmark {
    static func run() async throws {
        let key = try DevicePrivateKey.generate(.rsa)
        let backup = try EscrowBackup(deviceID: "e00fce68a1b2c3d4e5f60718", platform: "photon", product: "bench",
                                      privateKey: key, job: "bench", station: "bench")
        let ciphertext = try backup.encrypt(to: [X25519Identity.generate().recipient])
        print("object: \(ciphertext.count) bytes (a sealed RSA-1024 backup)")

        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("keyline-bench-store-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: scratch) }
        var stores: [(String, any EscrowStore)] = [("directory", DirectoryEscrowStore(root: scratch))]
        if let endpoint = ProcessInfo.processInfo.environment["KEYLINE_TEST_S3_ENDPOINT"], !endpoint.isEmpty {
            let bucket = "kl-bench-\(UUID().uuidString.prefix(8).lowercased())"
            let environment = ["AWS_ENDPOINT_URL": endpoint, "AWS_REGION": "us-east-1",
                               "AWS_ACCESS_KEY_ID": "keyline-bench", "AWS_SECRET_ACCESS_KEY": "keyline-bench", "HOME": "/nonexistent"]
            let store = try S3EscrowStore(uri: "s3://\(bucket)/escrow", environment: environment)
            try await store.createBucket()
            stores.append(("s3 (moto at \(endpoint))", store))
        } else {
            print("KEYLINE_TEST_S3_ENDPOINT unset: no local S3 server (run `make bench`, which starts one); directory only")
        }
        var serial = 0
        for (name, store) in stores {
            for concurrency in [1, 16] {
                // A short warm-up (connections, directories), then a timed batch.
                _ = try await batch(store, count: 16, concurrency: concurrency, ciphertext: ciphertext, next: &serial)
                let count = concurrency == 1 ? 200 : 800
                let seconds = try await batch(store, count: count, concurrency: concurrency, ciphertext: ciphertext, next: &serial)
                print(String(format: "%@: %4d backups, %2d at a time: %8.0f /s", name, count, concurrency, Double(count) / seconds))
            }
        }
    }

    /// Writes `count` new objects, `concurrency` in flight; returns the wall-clock seconds.
    static func batch(_ store: any EscrowStore, count: Int, concurrency: Int, ciphertext: [UInt8], next serial: inout Int) async throws -> Double {
        let first = serial
        serial += count
        let keys = try (first..<(first + count)).map { n in
            try EscrowObjectKey(product: "bench", deviceID: String(format: "e00fce68%016x", n),
                                publicKeySHA256: Age.sha256(Array("bench-\(n)".utf8)))
        }
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            var index = 0
            for _ in 0..<min(concurrency, keys.count) {
                let key = keys[index]
                index += 1
                group.addTask { _ = try await store.put(ciphertext, at: key) }
            }
            while try await group.next() != nil {
                if index < keys.count {
                    let key = keys[index]
                    index += 1
                    group.addTask { _ = try await store.put(ciphertext, at: key) }
                }
            }
        }
        let elapsed = ContinuousClock.now - start
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }
}
