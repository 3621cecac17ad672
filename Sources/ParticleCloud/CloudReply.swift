import Foundation
import Registry

/// A reply of the Particle cloud, read. Error bodies are `{"ok":false,"error":"<code>",
/// "error_description":"<text>"}`; every reply carries `X-Request-Id`.
public struct CloudReply: Sendable, Hashable {
    public var status: Int
    public var requestID: String?
    public var retryAfter: Duration?
    public var body: [UInt8]

    public init(status: Int, requestID: String?, retryAfter: Duration?, body: [UInt8]) {
        self.status = status
        self.requestID = requestID
        self.retryAfter = retryAfter
        self.body = body
    }

    /// The cloud's `error` code and `error_description`, when the body is such a document.
    public var error: (code: String?, description: String?) {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else { return (nil, nil) }
        return (Self.printable(object["error"]), Self.printable(object["error_description"] ?? object["message"]))
    }

    /// The reason stored with a parked upload or shown in a message: the cloud's words, else the status.
    public var reason: String {
        let (code, text) = error
        switch (code, text) {
        case let (code?, text?): return "\(code): \(text)"
        case let (code?, nil): return code
        case let (nil, text?): return text
        default: return "HTTP \(status)"
        }
    }

    /// `Retry-After` in seconds (RFC 9110 §10.2.3; the HTTP-date form is taken as "soon": 1 s),
    /// bounded so a hostile reply cannot park the drain for a day.
    public static func retryAfter(_ header: String?) -> Duration? {
        guard let header = header?.trimmingCharacters(in: .whitespaces), !header.isEmpty else { return nil }
        guard let seconds = UInt32(header) else { return .seconds(1) }
        return .seconds(min(Int(seconds), 3600))
    }

    /// Membership reply: member when the device is in `updatedDeviceIds` or `existingDeviceIds`;
    /// otherwise the list that names it (invalid, non-member), or nil for a body that is not one.
    public func membership(of deviceID: String) -> (member: Bool, listedAs: String?)? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else { return nil }
        let id = deviceID.lowercased()
        func listed(_ key: String) -> Bool {
            ((object[key] as? [Any]) ?? []).contains { ($0 as? String)?.lowercased() == id }
        }
        if listed("updatedDeviceIds") || listed("existingDeviceIds") { return (true, nil) }
        for key in ["invalidDeviceIds", "nonmemberDeviceIds"] where listed(key) { return (false, key) }
        guard object.keys.contains(where: { $0.hasSuffix("DeviceIds") }) else { return nil }
        return (false, nil)
    }

    /// Bounded, printable text from the cloud (it ends up in the registry and on terminals).
    static func printable(_ value: Any?) -> String? {
        guard let text = value as? String else { return nil }
        let clean = String(text.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7F }.prefix(300))
        return clean.isEmpty ? nil : clean
    }
}

/// What the outbox does with one attempt's reply (issue 20's failure policy, in FailureClass terms):
/// retryable → back off and send again; needs operator → stop every upload; bad input → park this one.
public enum CloudVerdict: Sendable, Hashable {
    case accepted
    /// 5xx, 429, a timeout or no connection; `after` is the cloud's Retry-After when it gave one.
    case retry(after: Duration?, problem: String)
    /// 401/403: the token, not this upload.
    case stopAll
    /// 400/404, a non-member: this upload is refused for good, with the cloud's reason.
    case park(reason: String)

    public static func of(_ reply: CloudReply) -> CloudVerdict {
        switch reply.status {
        case 200..<300: .accepted
        case 401, 403: .stopAll
        case 408, 429, 500...599:
            .retry(after: reply.retryAfter, problem: reply.reason == "HTTP \(reply.status)" ? reply.reason : "HTTP \(reply.status) (\(reply.reason))")
        default: .park(reason: reply.reason)
        }
    }
}
