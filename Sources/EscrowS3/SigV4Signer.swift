import Crypto
import Foundation
import DeviceKeys
import HexEncoding

/// AWS credentials for request signing. `description` never shows the secret or the token, so a
/// stray `print` or string interpolation cannot leak them; errors never carry this value.
public struct AWSCredentials: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    public let accessKeyID: String
    let secretAccessKey: String
    let sessionToken: String?

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken.flatMap { $0.isEmpty ? nil : $0 }
    }

    public var description: String { "AWSCredentials(<redacted>)" }
    public var debugDescription: String { description }
}

/// AWS Signature Version 4, header form ("Signing AWS API requests", AWS General Reference;
/// the canonical request, string to sign and signing key exactly as the published test suite
/// awslabs/aws-c-auth `tests/aws-signing-test-suite/v4` fixes them, vectors in
/// Tests/EscrowS3Tests/Fixtures/sigv4).
///
/// - Canonical URI: the raw path, each byte outside RFC 3986's unreserved set and '/' written
///   %XX (upper case), once. `normalizePath` removes "." and ".." segments and empty segments
///   first (every service but S3; S3 object keys are taken literally).
/// - Canonical query: parameters decoded, re-encoded the same way, sorted by name then value.
/// - Canonical headers: names lower-cased, values trimmed with inner whitespace runs collapsed to
///   one space, repeated names joined with ',' in the order given; every header passed is signed.
struct SigV4Signer: Sendable {
    var region: String
    var service: String
    var normalizePath: Bool

    static let algorithm = "AWS4-HMAC-SHA256"
    /// The payload hash of an empty body.
    static let emptyPayloadSHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    struct Request: Sendable {
        var method: String
        /// The path as the server sees it before percent-encoding ("/bucket/a b" is sent "/bucket/a%20b").
        var path: String
        /// Query parameters, decoded.
        var query: [(name: String, value: String)] = []
        /// Headers to sign (Host included), in order; repeated names allowed.
        var headers: [(name: String, value: String)]
        /// Lower-case hex SHA-256 of the body (or "UNSIGNED-PAYLOAD").
        var payloadSHA256: String
    }

    /// The headers to add to `request`: X-Amz-Date, X-Amz-Security-Token (with a session token) and
    /// Authorization, in that order.
    func sign(_ request: Request, credentials: AWSCredentials, date: Date) -> [(name: String, value: String)] {
        let stamp = Self.timestamp(date)
        var added: [(name: String, value: String)] = [("X-Amz-Date", stamp)]
        if let token = credentials.sessionToken { added.append(("X-Amz-Security-Token", token)) }
        var signed = request
        signed.headers += added
        let (canonical, signedHeaders) = canonicalRequest(signed)
        let scope = "\(stamp.prefix(8))/\(region)/\(service)/aws4_request"
        let toSign = stringToSign(canonicalRequest: canonical, timestamp: stamp, scope: scope)
        let signature = Self.hex(HMAC<SHA256>.authenticationCode(
            for: Data(toSign.utf8), using: signingKey(secret: credentials.secretAccessKey, day: String(stamp.prefix(8)))))
        added.append(("Authorization",
                      "\(Self.algorithm) Credential=\(credentials.accessKeyID)/\(scope), SignedHeaders=\(signedHeaders), Signature=\(signature)"))
        return added
    }

    /// The canonical request and its SignedHeaders list.
    func canonicalRequest(_ request: Request) -> (String, String) {
        let path = normalizePath ? Self.normalized(request.path) : request.path
        let uri = Self.encode(path, keepSlash: true)
        let query = request.query
            .map { (Self.encode($0.name, keepSlash: false), Self.encode($0.value, keepSlash: false)) }
            .sorted { $0.0 != $1.0 ? Array($0.0.utf8).lexicographicallyPrecedes(Array($1.0.utf8)) : Array($0.1.utf8).lexicographicallyPrecedes(Array($1.1.utf8)) }
            .map { "\($0.0)=\($0.1)" }
            .joined(separator: "&")
        var names: [String] = []
        var values: [String: [String]] = [:]
        for (name, value) in request.headers {
            let lower = name.lowercased()
            if values[lower] == nil { names.append(lower) }
            values[lower, default: []].append(Self.trimmed(value))
        }
        names.sort { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        let headerLines = names.map { "\($0):\(values[$0]!.joined(separator: ","))\n" }.joined()
        let signedHeaders = names.joined(separator: ";")
        let canonical = [request.method, uri, query, headerLines, signedHeaders, request.payloadSHA256].joined(separator: "\n")
        return (canonical, signedHeaders)
    }

    func stringToSign(canonicalRequest: String, timestamp: String, scope: String) -> String {
        let digest = SHA256Digest.hex(Array(canonicalRequest.utf8))
        return [Self.algorithm, timestamp, scope, digest].joined(separator: "\n")
    }

    func signingKey(secret: String, day: String) -> SymmetricKey {
        func hmac(_ key: SymmetricKey, _ text: String) -> SymmetricKey {
            SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Data(text.utf8), using: key)))
        }
        let dateKey = hmac(SymmetricKey(data: Data("AWS4\(secret)".utf8)), day)
        return hmac(hmac(hmac(dateKey, region), service), "aws4_request")
    }

    // MARK: - Encoding helpers

    /// `yyyyMMdd'T'HHmmss'Z'` in UTC.
    static func timestamp(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        return String(format: "%04d%02d%02dT%02d%02d%02dZ", c.year!, c.month!, c.day!, c.hour!, c.minute!, c.second!)
    }

    /// RFC 3986 percent-encoding: unreserved characters (A-Z a-z 0-9 - . _ ~) as they are,
    /// '/' too when `keepSlash`, every other UTF-8 byte as %XX.
    static func encode(_ text: String, keepSlash: Bool) -> String {
        let hexDigits = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."),
                 UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.append(byte)
            case UInt8(ascii: "/") where keepSlash:
                out.append(byte)
            default:
                out += [UInt8(ascii: "%"), hexDigits[Int(byte >> 4)], hexDigits[Int(byte & 0x0f)]]
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Percent-decoding of a query component ('+' is not a space in SigV4).
    static func decode(_ text: String) -> String {
        text.removingPercentEncoding ?? text
    }

    /// Splits a raw query string ("a=1&b") into decoded parameters.
    static func parseQuery(_ query: String) -> [(name: String, value: String)] {
        query.split(separator: "&", omittingEmptySubsequences: true).map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            return (decode(String(parts[0])), parts.count > 1 ? decode(String(parts[1])) : "")
        }
    }

    /// RFC 3986 §5.2.4 dot-segment removal, empty segments dropped; a trailing '/' is kept.
    static func normalized(_ path: String) -> String {
        var segments: [Substring] = []
        for segment in path.split(separator: "/", omittingEmptySubsequences: true) {
            switch segment {
            case ".": continue
            case "..": _ = segments.popLast()
            default: segments.append(segment)
            }
        }
        let joined = "/" + segments.joined(separator: "/")
        return path.hasSuffix("/") && !segments.isEmpty ? joined + "/" : joined
    }

    /// Trims a header value and collapses each run of whitespace (folded lines included) to one space.
    static func trimmed(_ value: String) -> String {
        value.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }).joined(separator: " ")
    }

    static func hex<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 { Hex.encode(bytes) }
}
