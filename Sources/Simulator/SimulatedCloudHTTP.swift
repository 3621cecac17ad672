import Foundation

/// One HTTP request as the simulated cloud sees it (the server hands it over whole).
public struct CloudHTTPRequest: Sendable {
    public var method: String
    /// The path without the query string, e.g. `/v1/provisioning/e00fce68…`.
    public var path: String
    public var query: String
    /// Header names lowercased.
    public var headers: [String: String]
    public var body: [UInt8]

    public init(method: String, target: String, headers: [String: String], body: [UInt8]) {
        self.method = method.uppercased()
        let parts = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        self.path = String(parts.first ?? "")
        self.query = parts.count == 2 ? String(parts[1]) : ""
        self.headers = Dictionary(headers.map { ($0.key.lowercased(), $0.value) }, uniquingKeysWith: { _, last in last })
        self.body = body
    }

    /// The path's segments, e.g. ["v1", "provisioning", "e00f…"].
    var segments: [String] { path.split(separator: "/").map(String.init) }
}

/// What the simulated cloud answers: a status, a JSON body, and what the server does around it.
public struct CloudHTTPResponse: Sendable {
    public var status: Int
    public var body: [UInt8]
    public var retryAfter: Int?
    /// Answer this late (the `slow=` fault).
    public var delay: Duration = .zero
    /// Close the connection without an answer (the `down=` fault).
    public var dropConnection = false

    static func json(_ status: Int, _ object: Any) -> CloudHTTPResponse {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        return CloudHTTPResponse(status: status, body: [UInt8](data))
    }

    /// Particle's error shape: `{"ok":false,"error":CODE,"error_description":TEXT}`.
    static func error(_ status: Int, _ code: String, _ description: String) -> CloudHTTPResponse {
        json(status, ["ok": false, "error": code, "error_description": description] as [String: Any])
    }

    static let dropped = CloudHTTPResponse(status: 0, body: [], dropConnection: true)
}

/// `application/x-www-form-urlencoded` bodies (and query strings), as particle-api-js sends them.
enum CloudForm {
    /// Field → value; a malformed percent escape is nil (the caller answers 400).
    static func parse(_ bytes: [UInt8]) -> [String: String]? {
        parse(String(decoding: bytes, as: UTF8.self))
    }

    static func parse(_ text: String) -> [String: String]? {
        var fields: [String: String] = [:]
        for pair in text.split(separator: "&") {
            let halves = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = decode(halves[0]), let value = halves.count == 2 ? decode(halves[1]) : "" else { return nil }
            fields[name] = value
        }
        return fields
    }

    /// Percent-decoding with `+` as a space (HTML form encoding).
    static func decode(_ text: Substring) -> String? {
        text.replacingOccurrences(of: "+", with: " ").removingPercentEncoding
    }

    /// Encodes fields for a form body (what the simulator's own devices send).
    static func encode(_ fields: [(String, String)]) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return fields.map { name, value in
            "\(name.addingPercentEncoding(withAllowedCharacters: allowed) ?? name)=\(value.addingPercentEncoding(withAllowedCharacters: allowed) ?? value)"
        }.joined(separator: "&")
    }
}
