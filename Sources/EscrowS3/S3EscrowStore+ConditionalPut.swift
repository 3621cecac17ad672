import Foundation
import Escrow
import DeviceKeys

/// Write-once in S3 rests on the server honouring `If-None-Match: *` on PutObject. AWS S3 (since
/// 2024-08), MinIO, Ceph RGW and moto do; a server that ignores the header (older releases of some
/// S3-compatible stores, or a proxy that drops it) would answer 200 and silently replace an
/// existing object. So before a store's first put, keyline checks: it puts a fixed probe object,
/// `<prefix>/.keyline-conditional-put-probe` (not an object key: those never start with '.'),
/// twice with `If-None-Match: *`; the second put must be refused with 412. If it is accepted, the
/// store is refused with `.unsafeStore` (exit 79, needs an operator) and nothing is escrowed
/// there. Once per store value and process (two extra requests per run), shared by concurrent puts.
/// The probe fails closed: any answer but the expected ones (2xx, then 412) stops the put with the
/// probe's own error (a 403 on the probe's name, the store away), so no object is written to a
/// store whose write-once was not checked; the next put probes again.
extension S3EscrowStore {
    /// The probe's name under the prefix; audit listings leave it out.
    public static let probeName = ".keyline-conditional-put-probe"

    static let probeBytes = Array("keyline: this object checks that the store refuses to overwrite (If-None-Match: *)\n".utf8)
    static let probeSHA256 = SHA256Digest.hash(probeBytes)

    /// Runs the probe once (later callers wait for the first one's result) and throws whatever
    /// stopped it: a detected overwrite (`unsafeStore`) or the probe request's own error.
    func requireConditionalPuts() async throws {
        try await conditionalPutCheck.run { try await probeConditionalPut() }
    }

    private func probeConditionalPut() async throws {
        let name = settings.prefix.isEmpty ? Self.probeName : "\(settings.prefix)/\(Self.probeName)"
        // With a checksum, as every put: buckets with Object Lock require one.
        let headers: [(name: String, value: String)] = [
            ("If-None-Match", "*"), ("Content-Type", "text/plain"), ("x-amz-sdk-checksum-algorithm", "SHA256"),
            ("x-amz-checksum-sha256", Data(Self.probeSHA256).base64EncodedString()),
        ]
        for attempt in 1...2 {
            let response = try await client.send(.PUT, operation: "PutObject", name: name, headers: headers, body: Self.probeBytes)
            switch response.status {
            case 200...299 where attempt == 2:
                throw EscrowStoreError.unsafeStore(
                    path: "s3://\(settings.bucket)/\(name)",
                    problem: "was overwritten by a PutObject with If-None-Match: * — this S3 server does not honour conditional writes, so it cannot keep escrow objects write-once. Use a server that does (AWS S3, MinIO, Ceph RGW 18+, …) or remove what strips the header")
            case 200...299, 412:
                continue
            default:
                throw client.error(from: response, operation: "PutObject", name: name)
                    ?? S3StoreError.badResponse(operation: "PutObject", bucket: settings.bucket, key: name, reason: "HTTP \(response.status)")
            }
        }
    }
}

/// A check run once and shared: the first caller runs it; the others wait for its outcome. A
/// failure is not remembered (the next put checks again: the cause may have been transient).
final class OnceCheck: @unchecked Sendable {
    private let lock = NSLock()
    private var passed = false
    private var running: Task<Void, any Error>?

    func run(_ check: @escaping @Sendable () async throws -> Void) async throws {
        let task: Task<Void, any Error>? = lock.withLock {
            if passed { return nil }
            if let running { return running }
            let task = Task { try await check() }
            running = task
            return task
        }
        guard let task else { return }
        do {
            try await task.value
            lock.withLock { passed = true; running = nil }
        } catch {
            lock.withLock { if running == task { running = nil } }
            throw error
        }
    }
}
