import LocalFiles
import Foundation
import Escrow
import NIOHTTP1
import DeviceKeys

/// What an audit needs from an S3 store: its objects listed a page at a time (ListObjectsV2), and
/// the SHA-256 of an object's bytes as they are now. Object keys are the registry's (relative to
/// the store's prefix), as `DirectoryEscrowStore`'s walk gives them. Objects are read over HTTP,
/// `auditConcurrency` requests at a time.
extension S3EscrowStore {
    /// Requests in flight at once when reading a batch of objects.
    public static let auditConcurrency = 16

    public var displayName: String { storeURI }

    public func location(of key: EscrowObjectKey) -> String { "s3://\(settings.bucket)/\(settings.objectName(key))" }

    public func sha256s(ofObjectsAt objectKeys: [String]) async -> [Result<String?, any Error>] {
        await concurrentMap(objectKeys, width: Self.auditConcurrency) { key -> Result<String?, any Error> in
            do { return .success(try await sha256(ofObjectAt: key)) } catch { return .failure(error) }
        }
    }

    public func contents(ofObjectsAt objectKeys: [String]) async -> [Result<[UInt8]?, any Error>] {
        await concurrentMap(objectKeys, width: Self.auditConcurrency) { key -> Result<[UInt8]?, any Error> in
            do { return .success(try await contents(ofObjectAt: key)) } catch { return .failure(error) }
        }
    }

    /// ListObjectsV2 a page at a time, following the continuation token. A page may be empty
    /// (only the probe on it) without being the last.
    public func objectPages(under product: String?) -> AsyncThrowingStream<[String], any Error> {
        let cursor = ListingCursor()
        return AsyncThrowingStream(unfolding: {
            guard !cursor.ended else { return nil }
            let page = try await listObjects(under: product, continuationToken: cursor.token)
            cursor.token = page.next
            cursor.ended = page.next == nil
            return page.keys
        })
    }

    /// One page (up to `maxKeys`, S3's limit being 1,000) of ListObjectsV2 under the prefix (and
    /// `product`, if given), and the token for the next page (nil after the last).
    public func listObjects(under product: String?, continuationToken: String?,
                            maxKeys: Int = 1_000) async throws -> (keys: [String], next: String?) {
        let base = settings.prefix.isEmpty ? "" : settings.prefix + "/"
        var query: [(name: String, value: String)] = [("list-type", "2"), ("max-keys", String(maxKeys)),
                                                    ("prefix", base + (product.map { $0 + "/" } ?? ""))]
        if let continuationToken { query.append(("continuation-token", continuationToken)) }
        let response = try await client.send(.GET, operation: "ListObjectsV2", name: "", query: query)
        if let error = client.error(from: response, operation: "ListObjectsV2", name: "") { throw error }
        let xml = String(decoding: response.body, as: UTF8.self)
        // The conditional-put probe (S3EscrowStore+ConditionalPut.swift) and the station check's
        // probes (StoreWriteProbe.swift) are the store's own, not objects (nor orphans).
        let keys = Self.elements("Key", in: xml).compactMap { key in key.hasPrefix(base) ? String(key.dropFirst(base.count)) : nil }
            .filter { $0 != Self.probeName && !$0.hasPrefix(StoreWriteProbe.folder + "/") }
        let truncated = S3Client.element("IsTruncated", in: xml) == "true"
        let next = truncated ? S3Client.element("NextContinuationToken", in: xml) : nil
        if truncated && next == nil {
            throw S3StoreError.badResponse(operation: "ListObjectsV2", bucket: settings.bucket, key: base,
                                           reason: "a truncated listing without NextContinuationToken")
        }
        return (keys, next)
    }

    /// The SHA-256 (lowercase hex) of the object at `objectKey` (relative to the prefix), or nil
    /// when there is none. The bytes are read and hashed here: a checksum the store keeps is only
    /// what an uploader claimed.
    public func sha256(ofObjectAt objectKey: String) async throws -> String? {
        try await read(settings.prefix.isEmpty ? objectKey : settings.prefix + "/" + objectKey).map { SHA256Digest.hex($0) }
    }

    /// The object's bytes, or nil when there is none.
    public func contents(ofObjectAt objectKey: String) async throws -> [UInt8]? {
        try await read(settings.prefix.isEmpty ? objectKey : settings.prefix + "/" + objectKey)
    }

    /// The text of every `<name>…</name>`, XML entities decoded.
    static func elements(_ name: String, in xml: String) -> [String] {
        var found: [String] = []
        var rest = xml[...]
        while let start = rest.range(of: "<\(name)>"), let end = rest.range(of: "</\(name)>", range: start.upperBound..<rest.endIndex) {
            found.append(S3Client.element(name, in: String(rest[start.lowerBound..<end.upperBound])) ?? "")
            rest = rest[end.upperBound...]
        }
        return found
    }
}

/// Where an S3 listing is; used by one caller at a time (the stream's consumer).
private final class ListingCursor: @unchecked Sendable {
    var token: String?
    var ended = false
}
