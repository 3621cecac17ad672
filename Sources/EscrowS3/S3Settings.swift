import Foundation
import Escrow

/// Object Lock retention given to every object a store writes (S3 `PutObject`
/// x-amz-object-lock-mode / x-amz-object-lock-retain-until-date). In `COMPLIANCE` mode nobody, the
/// bucket's administrator included, can shorten it; `GOVERNANCE` lets a specially permitted user.
public struct ObjectLockRetention: Sendable, Hashable {
    public enum Mode: String, Sendable, Hashable { case compliance = "COMPLIANCE", governance = "GOVERNANCE" }
    public var mode: Mode
    public var days: Int

    public init(mode: Mode, days: Int) {
        self.mode = mode
        self.days = days
    }
}

/// Where an S3 escrow store is and how to reach it: `s3://bucket/prefix[?region=…&endpoint=…&lock=MODE&retain-days=N]`.
///
/// The query parameters let a pipeline's `escrow.store` (or `--store`, KEYLINE_ESCROW_STORE)
/// carry everything; without them the endpoint and region come from the standard AWS variables
/// (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL; AWS_REGION, AWS_DEFAULT_REGION, the profile's region)
/// and AWS S3 itself is used. Credentials are never part of the URI.
public struct S3StoreSettings: Sendable, Hashable {
    public var bucket: String
    /// Key prefix without leading or trailing '/' (may be empty).
    public var prefix: String
    public var region: String
    /// `https://host[:port]` (or `http://` for a loopback test server).
    public var endpoint: URL
    /// `endpoint/bucket/key` (custom endpoints: MinIO, Ceph, Garage, moto) rather than `bucket.endpoint/key`.
    public var pathStyle: Bool
    public var retention: ObjectLockRetention?

    public init(bucket: String, prefix: String, region: String, endpoint: URL, pathStyle: Bool, retention: ObjectLockRetention? = nil) {
        self.bucket = bucket
        self.prefix = prefix
        self.region = region
        self.endpoint = endpoint
        self.pathStyle = pathStyle
        self.retention = retention
    }

    /// The store as the registry records it: `s3://bucket/prefix` (no endpoint, no credentials).
    public var storeURI: String { prefix.isEmpty ? "s3://\(bucket)" : "s3://\(bucket)/\(prefix)" }

    /// Parses an `s3://` URI; `environment` supplies what the URI does not say.
    public static func parse(_ uri: String, environment: [String: String],
                             profileRegion: String? = nil) throws(EscrowStoreError) -> S3StoreSettings {
        guard uri.hasPrefix("s3://"), let components = URLComponents(string: uri) else {
            throw .invalidStore("\(uri) is not an s3://bucket/prefix URI")
        }
        let bucket = components.host ?? ""
        guard isBucketName(bucket) else {
            throw .invalidStore("\(uri): bucket \"\(bucket)\" is not a valid S3 bucket name (3-63 lowercase letters, digits, '.', '-')")
        }
        let prefix = components.path.split(separator: "/").joined(separator: "/")
        guard prefix.split(separator: "/").allSatisfy({ EscrowObjectKey.isPathSegment(String($0)) }) else {
            throw .invalidStore("\(uri): each prefix segment must be 1-64 letters, digits, '.', '-' or '_' (not starting with '.')")
        }
        var query: [String: String] = [:]
        for item in components.queryItems ?? [] {
            guard ["region", "endpoint", "lock", "retain-days"].contains(item.name) else {
                throw .invalidStore("\(uri): unknown parameter \"\(item.name)\" (known: region, endpoint, lock, retain-days)")
            }
            query[item.name] = item.value ?? ""
        }
        func nonEmpty(_ key: String) -> String? { environment[key].flatMap { $0.isEmpty ? nil : $0 } }
        let region = query["region"] ?? nonEmpty("AWS_REGION") ?? nonEmpty("AWS_DEFAULT_REGION") ?? profileRegion ?? "us-east-1"
        let endpointText = query["endpoint"] ?? nonEmpty("AWS_ENDPOINT_URL_S3") ?? nonEmpty("AWS_ENDPOINT_URL")
        let endpoint: URL
        let pathStyle: Bool
        if let endpointText {
            guard let url = URL(string: endpointText), let scheme = url.scheme?.lowercased(), scheme == "https" || scheme == "http",
                  url.host != nil, url.path.isEmpty || url.path == "/", url.query == nil, url.user == nil else {
                throw .invalidStore("endpoint \(endpointText) is not http(s)://host[:port]")
            }
            // Plain HTTP lets anyone on the path answer the PUT (and its overwrite check): only
            // to a server on this machine, as a test's.
            guard scheme == "https" || isLoopback(url.host!) else {
                throw .invalidStore("endpoint \(endpointText) uses plain http:// to \(url.host!), which is not this "
                                    + "machine: use https:// (http:// is allowed only to localhost, 127.0.0.0/8 or ::1)")
            }
            endpoint = url
            pathStyle = true
        } else {
            endpoint = URL(string: "https://s3.\(region).amazonaws.com")!
            pathStyle = bucket.contains(".")  // dotted names do not match the wildcard certificate
        }
        var retention: ObjectLockRetention?
        if let lock = query["lock"] {
            guard let mode = ObjectLockRetention.Mode(rawValue: lock.uppercased()) else {
                throw .invalidStore("\(uri): lock must be COMPLIANCE or GOVERNANCE")
            }
            guard let text = query["retain-days"], let days = Int(text), (1...36500).contains(days) else {
                throw .invalidStore("\(uri): lock=\(lock) needs retain-days=N (1-36500)")
            }
            retention = ObjectLockRetention(mode: mode, days: days)
        } else if query["retain-days"] != nil {
            throw .invalidStore("\(uri): retain-days needs lock=COMPLIANCE or lock=GOVERNANCE")
        }
        return S3StoreSettings(bucket: bucket, prefix: prefix, region: region, endpoint: endpoint,
                               pathStyle: pathStyle, retention: retention)
    }

    /// The object key of an escrow object: `<prefix>/<product>/<device-id>/<spki-sha256>.age`.
    public func objectName(_ key: EscrowObjectKey) -> String { prefix.isEmpty ? key.path : "\(prefix)/\(key.path)" }

    /// The request's host header value and raw (unencoded) path for an object.
    func location(of name: String) -> (host: String, path: String) {
        let host = endpoint.host!
        let authority = endpoint.port.map { "\(host):\($0)" } ?? host
        return pathStyle ? (authority, "/\(bucket)/\(name)") : ("\(bucket).\(authority)", "/\(name)")
    }

    /// localhost, 127.0.0.0/8 or ::1: addresses that never leave the machine.
    static func isLoopback(_ host: String) -> Bool {
        let name = host.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        if name == "localhost" || name == "::1" || name == "0:0:0:0:0:0:0:1" { return true }
        let octets = name.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets[0] == "127"
            && octets.allSatisfy { octet in octet.count <= 3 && UInt8(octet).map { _ in true } ?? false }
    }

    static func isBucketName(_ name: String) -> Bool {
        (3...63).contains(name.utf8.count)
            && name.utf8.allSatisfy { (48...57).contains($0) || (97...122).contains($0) || $0 == 45 || $0 == 46 }
            && name.first != "." && name.first != "-" && name.last != "." && name.last != "-"
    }
}
