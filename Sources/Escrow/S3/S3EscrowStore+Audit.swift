import Foundation

/// What an audit needs from an S3 store, as `DirectoryEscrowStore+Audit.swift` gives it for a
/// directory: every object under the prefix in a stable order, and an object's bytes as they are now.
extension S3EscrowStore {
    /// One page (up to 1,000 names) of ListObjectsV2 under `<prefix>/` (or `<prefix>/<product>/`),
    /// as paths relative to the prefix, in UTF-8 byte order (S3's listing order, the order of
    /// `ORDER BY object_key COLLATE "C"`), and the token of the next page (nil at the end).
    public func listObjectNames(under product: String? = nil, continuation: String? = nil) async throws
        -> (names: [String], continuation: String?) {
        let base = settings.prefix.isEmpty ? "" : settings.prefix + "/"
        var query: [(name: String, value: String)] = [("list-type", "2"), ("max-keys", "1000"),
                                                      ("prefix", base + (product.map { $0 + "/" } ?? ""))]
        if let continuation { query.append(("continuation-token", continuation)) }
        let response = try await client.send(.GET, operation: "ListObjectsV2", name: "", query: query)
        if let error = client.error(from: response, operation: "ListObjectsV2", name: base) { throw error }
        let xml = String(decoding: response.body, as: UTF8.self)
        // The conditional-put probe is the store's own, not an object (nor an orphan).
        let names = Self.elements("Key", in: xml).compactMap { key in key.hasPrefix(base) ? String(key.dropFirst(base.count)) : nil }
            .filter { $0 != Self.probeName }
        let truncated = S3Client.element("IsTruncated", in: xml) == "true"
        let next = truncated ? S3Client.element("NextContinuationToken", in: xml) : nil
        if truncated && next == nil {
            throw S3StoreError.badResponse(operation: "ListObjectsV2", bucket: settings.bucket, key: base,
                                           reason: "a truncated listing without NextContinuationToken")
        }
        return (names, next)
    }

    /// The bytes of the object at `relativePath` under the prefix (any name a listing gave, not
    /// only well-formed object keys), or nil when there is none.
    public func objectBytes(at relativePath: String) async throws -> [UInt8]? {
        try await read(settings.prefix.isEmpty ? relativePath : settings.prefix + "/" + relativePath)
    }

    /// Every `<name>…</name>` text in `xml`, in order, entities decoded.
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
