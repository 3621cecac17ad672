import Foundation
import NIOHTTP1
import Escrow
import DeviceKeys
import HexEncoding

/// An `EscrowStore` in an S3-compatible object store (AWS S3, MinIO, Ceph RGW, Garage):
/// objects at `<prefix>/<product>/<device-id>/<spki-sha256>.age` in one bucket, the same keys as
/// `DirectoryEscrowStore` under the prefix. Selected by `s3://bucket/prefix` (`EscrowStores.open`).
///
/// Write-once is the store's job, not keyline's: every `PutObject` carries `If-None-Match: *`
/// (S3 conditional writes), so the store refuses to replace an existing key even for a writer
/// that is not keyline, and `x-amz-checksum-sha256`, so the store verifies and keeps the SHA-256
/// of the bytes it received. A refused put (412 Precondition Failed) reads the stored object:
/// identical bytes (SHA-256 compared) count as written — a retried put whose first reply was lost,
/// or a resumed job — other bytes are the same `.objectExists` refusal as the directory store's.
/// A server that ignores If-None-Match is detected before the first put and refused
/// (S3EscrowStore+ConditionalPut.swift). With `retention` set, each object is put under Object Lock (`COMPLIANCE` or `GOVERNANCE`)
/// until now + the retention period. A put that returned 200 is durable (S3's contract).
///
/// S3 puts are atomic: an interrupted put leaves no partial object and no temporary name, so
/// `sweepStaleTemporaryFiles` has nothing to do. Transient failures (5xx, 503 SlowDown, 429,
/// timeouts, lost connections) are retried with backoff (`S3RetryPolicy`); errors name bucket,
/// key and the store's error code, never credentials.
public struct S3EscrowStore: EscrowStore {
    public let settings: S3StoreSettings
    let client: S3Client
    /// The check that the server honours If-None-Match (S3EscrowStore+ConditionalPut.swift), once.
    let conditionalPutCheck = OnceCheck()

    public init(settings: S3StoreSettings, credentials: AWSCredentials, retry: S3RetryPolicy = S3RetryPolicy()) {
        self.settings = settings
        client = S3Client(settings: settings, credentials: credentials, retry: retry)
    }

    /// A store for `uri` with credentials and defaults from `environment` (the standard AWS variables and files).
    public init(uri: String, environment: [String: String], retry: S3RetryPolicy = S3RetryPolicy()) throws {
        let settings = try S3StoreSettings.parse(uri, environment: environment,
                                                 profileRegion: AWSCredentialSources.profileRegion(environment: environment))
        self.init(settings: settings, credentials: try AWSCredentialSources.credentials(environment: environment), retry: retry)
    }

    public var storeURI: String { settings.storeURI }

    public func put(_ ciphertext: [UInt8], at key: EscrowObjectKey) async throws -> String {
        try await requireConditionalPuts()
        let name = settings.objectName(key)
        let digest = SHA256Digest.hash(ciphertext)
        let hex = Hex.encode(digest)
        let checksum = Data(digest).base64EncodedString()
        var headers: [(name: String, value: String)] = [
            ("If-None-Match", "*"),
            ("Content-Type", "application/octet-stream"),
            ("x-amz-sdk-checksum-algorithm", "SHA256"),
            ("x-amz-checksum-sha256", checksum),
        ]
        if let retention = settings.retention {
            headers.append(("x-amz-object-lock-mode", retention.mode.rawValue))
            headers.append(("x-amz-object-lock-retain-until-date", Self.retainUntil(days: retention.days, from: Date())))
        }
        let response = try await client.send(.PUT, operation: "PutObject", name: name, headers: headers, body: ciphertext)
        switch response.status {
        case 200...299:
            if let stored = response.headers.first(name: "x-amz-checksum-sha256"), stored != checksum {
                throw S3StoreError.badResponse(operation: "PutObject", bucket: settings.bucket, key: name,
                                               reason: "the store recorded SHA-256 \(stored), not the \(checksum) sent")
            }
            return hex
        case 412:
            // The key exists (written earlier, by another station, or by this put's lost first reply).
            guard let existing = try await read(name) else {
                throw S3StoreError.badResponse(operation: "PutObject", bucket: settings.bucket, key: name,
                                               reason: "412 Precondition Failed, yet the object does not exist")
            }
            let stored = SHA256Digest.hex(existing)
            guard stored == hex else { throw EscrowStoreError.objectExists(key, storedSHA256: stored, newSHA256: hex) }
            return hex
        default:
            throw client.error(from: response, operation: "PutObject", name: name)
                ?? S3StoreError.badResponse(operation: "PutObject", bucket: settings.bucket, key: name, reason: "HTTP \(response.status)")
        }
    }

    public func get(_ key: EscrowObjectKey, expectedSHA256: String) async throws -> [UInt8] {
        guard let bytes = try await read(settings.objectName(key)) else { throw EscrowStoreError.notFound(key) }
        let actual = SHA256Digest.hex(bytes)
        guard actual == expectedSHA256.lowercased() else {
            throw EscrowStoreError.checksumMismatch(key, expected: expectedSHA256.lowercased(), actual: actual)
        }
        return bytes
    }

    public func contains(_ key: EscrowObjectKey) async throws -> Bool {
        try await head(settings.objectName(key)) != nil
    }

    /// An object an interrupted run wrote counts as written when its bytes hash to the recorded
    /// SHA-256 (read back in full: S3's ETag is not a SHA-256, and a stored checksum is only the
    /// uploader's claim). Nothing more is needed for durability: a stored object is durable.
    public func adopt(_ key: EscrowObjectKey, expectedSHA256: String) async throws -> Bool {
        guard let bytes = try await read(settings.objectName(key)) else { return false }
        let actual = SHA256Digest.hex(bytes)
        let expected = expectedSHA256.lowercased()
        guard actual == expected else { throw EscrowStoreError.checksumMismatch(key, expected: expected, actual: actual) }
        return true
    }

    /// Nothing to sweep: S3 puts are atomic (no partial objects, no temporary names). Returns 0.
    public func sweepStaleTemporaryFiles(olderThan: Duration) async throws -> Int { 0 }

    /// The Object Lock retention the store holds for `key` (read from HeadObject), or nil when
    /// the object has none; throws `.notFound` when there is no object.
    public func retention(of key: EscrowObjectKey) async throws -> (mode: String, retainUntil: String)? {
        let name = settings.objectName(key)
        guard let headers = try await head(name) else { throw EscrowStoreError.notFound(key) }
        guard let mode = headers.first(name: "x-amz-object-lock-mode"),
              let until = headers.first(name: "x-amz-object-lock-retain-until-date") else { return nil }
        return (mode, until)
    }

    /// Creates the bucket (with Object Lock enabled when asked); an existing bucket of ours is fine.
    /// For setting up test and demo stores; factories create theirs with their own tooling.
    public func createBucket(objectLock: Bool = false) async throws {
        var body: [UInt8] = []
        if settings.region != "us-east-1" {
            body = Array("<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>\(settings.region)</LocationConstraint></CreateBucketConfiguration>".utf8)
        }
        let headers: [(name: String, value: String)] = objectLock ? [("x-amz-bucket-object-lock-enabled", "true")] : []
        let response = try await client.send(.PUT, operation: "CreateBucket", name: "", headers: headers, body: body)
        if let error = client.error(from: response, operation: "CreateBucket", name: ""),
           !(response.status == 409 && Self.isOwnedBucket(error)) {
            throw error
        }
    }

    // MARK: - Requests

    /// GetObject: the bytes, or nil on 404 NoSuchKey (a missing bucket is an error).
    func read(_ name: String) async throws -> [UInt8]? {
        let response = try await client.send(.GET, operation: "GetObject", name: name)
        if response.status == 404, case .http(_, _, _, _, "NoSuchKey", _, _)? = client.error(from: response, operation: "GetObject", name: name) {
            return nil
        }
        if let error = client.error(from: response, operation: "GetObject", name: name) { throw error }
        return response.body
    }

    /// HeadObject: the headers, or nil on 404 (HEAD replies have no body to tell a missing bucket apart).
    func head(_ name: String) async throws -> HTTPHeaders? {
        let response = try await client.send(.HEAD, operation: "HeadObject", name: name)
        if response.status == 404 { return nil }
        if let error = client.error(from: response, operation: "HeadObject", name: name) { throw error }
        return response.headers
    }

    static func isOwnedBucket(_ error: S3StoreError) -> Bool {
        if case .http(_, _, _, _, "BucketAlreadyOwnedByYou", _, _) = error { return true }
        return false
    }

    /// ISO 8601 in UTC with whole seconds, as S3 takes x-amz-object-lock-retain-until-date.
    static func retainUntil(days: Int, from now: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: now.addingTimeInterval(Double(days) * 86_400))
    }
}
