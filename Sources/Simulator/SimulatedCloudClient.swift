import AsyncHTTPClient
import DeviceKeys
import Foundation
import NIOCore
import NIOHTTP1

/// How `keyline-sim serve` (and tests) reach a simulated cloud: its devices' handshakes
/// (`/sim/connect`), the fleet's factory keys (`/sim/factory-keys`), and plain requests.
/// Plain http to a loopback address only; never sends keyline's token (the `/sim/` endpoints need none).
public struct SimulatedCloudClient: Sendable {
    public let baseURL: String
    public var timeout: Duration

    public init(url: String, timeout: Duration = .seconds(10)) throws(SimulatedCloudError) {
        var base = url
        while base.hasSuffix("/") { base.removeLast() }
        guard let parsed = URL(string: base), parsed.scheme == "http",
              let host = parsed.host, ["127.0.0.1", "::1", "[::1]", "localhost"].contains(host)
        else { throw .badURL(url) }
        baseURL = base
        self.timeout = timeout
    }

    /// A reply: status, headers (names lowercased), body.
    public struct Reply: Sendable {
        public var status: Int
        public var headers: [String: String]
        public var body: [UInt8]
        /// The body as a JSON object (empty if it is not one).
        public var json: [String: Any] {
            (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] ?? [:]
        }
    }

    /// One request; a connection the cloud closed or refused throws `.unreachable`.
    public func send(_ method: String, _ path: String, body: [UInt8] = [], contentType: String? = nil,
                     headers extra: [String: String] = [:]) async throws(SimulatedCloudError) -> Reply {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = HTTPMethod(rawValue: method)
        if let contentType { request.headers.add(name: "Content-Type", value: contentType) }
        for (name, value) in extra { request.headers.add(name: name, value: value) }
        if !body.isEmpty || method == "POST" { request.body = .bytes(ByteBuffer(bytes: body)) }
        do {
            let response = try await HTTPClient.shared.execute(request, timeout: .nanoseconds(timeout.components.seconds * 1_000_000_000))
            let bytes = try await response.body.collect(upTo: 1 << 20)
            var headers: [String: String] = [:]
            for (name, value) in response.headers { headers[name.lowercased()] = value }
            return Reply(status: Int(response.status.code), headers: headers, body: Array(buffer: bytes))
        } catch {
            throw .unreachable(url: baseURL, detail: "\(error)")
        }
    }

    /// A form POST (`application/x-www-form-urlencoded`).
    public func post(_ path: String, form: [(String, String)], headers: [String: String] = [:]) async throws(SimulatedCloudError) -> Reply {
        try await send("POST", path, body: Array(CloudForm.encode(form).utf8), contentType: "application/x-www-form-urlencoded", headers: headers)
    }

    /// What a device's handshake with the cloud came to.
    public enum Handshake: Sendable, Equatable {
        case online
        /// The cloud refused the key (it holds another one, or none); its reason.
        case keyMismatch(String)
        /// No answer (the cloud is down or not running).
        case unreachable(String)
    }

    /// A simulated device's handshake: the public key it presents.
    func handshake(deviceID: String, publicKey: DevicePublicKey) async -> Handshake {
        do {
            let reply = try await post("/sim/connect", form: [("deviceID", deviceID), ("publicKey", publicKey.pem)])
            switch reply.status {
            case 200: return .online
            case 403: return .keyMismatch(reply.json["error_description"] as? String ?? "key mismatch")
            default: return .unreachable("HTTP \(reply.status)")
            }
        } catch {
            return .unreachable(error.description)
        }
    }

    /// One factory device: its platform and, unless it ships blank, the public key of its factory key.
    public struct FactoryDevice: Sendable {
        public var deviceID: String
        public var platform: String
        public var publicKey: DevicePublicKey?
        public init(deviceID: String, platform: String, publicKey: DevicePublicKey?) {
            self.deviceID = deviceID
            self.platform = platform
            self.publicKey = publicKey
        }
    }

    /// Tells the cloud the devices as they left Particle's factory (`/sim/factory-keys`).
    public func registerFactory(_ devices: [FactoryDevice]) async throws(SimulatedCloudError) {
        let list = devices.map { device -> [String: String] in
            var entry = ["deviceID": device.deviceID, "platform": device.platform]
            if let key = device.publicKey { entry["publicKey"] = key.pem }
            return entry
        }
        let body = (try? JSONSerialization.data(withJSONObject: list)) ?? Data("[]".utf8)
        let reply = try await send("POST", "/sim/factory-keys", body: [UInt8](body), contentType: "application/json")
        guard reply.status == 200 else {
            throw .unreachable(url: baseURL, detail: "factory keys refused: HTTP \(reply.status) \(String(decoding: reply.body, as: UTF8.self))")
        }
    }
}
