import FailurePolicy
import DeviceKeys
import Dispatch
import Foundation
import ParticlePlatform

/// The simulated Particle cloud (`keyline-sim cloud`): which public key it holds for each device,
/// which product each device belongs to, the calls it received, and its injected faults.
///
/// HTTP surface (`respond(to:)`; the server in `SimulatedCloudServer`):
/// - the two endpoints particle-cli calls (particle-cli-keys.md §3), with a Bearer token:
///   `POST /v1/provisioning/{deviceId}` (form `deviceID`, `publicKey` SPKI PEM, `filename`, `order`,
///   `algorithm` rsa|ecc, optional `product_id`) and `POST /v1/products/{product}/devices` (form `id`);
///   and `GET /v1/user` (particle-cli's `whoami`), which `keyline station check` calls to test a token;
/// - sim-only endpoints under `/sim/` (no token; keyline itself never calls them), see
///   `SimulatedCloud+Sim.swift`: keys held, call counters, faults, factory keys, device connections.
///
/// Thread-safe: state sits behind a lock; `--state` is written on a serial queue after each change.
public final class SimulatedCloud: @unchecked Sendable {
    /// What the cloud knows of one device.
    public struct DeviceRecord: Codable, Sendable, Equatable {
        /// From the factory registration (the platform decides the protocol, hence the algorithm).
        public var platform: String?
        /// The public key the cloud holds (SPKI DER) and how it was uploaded.
        public var publicKeySPKI: [UInt8]?
        public var algorithm: String?
        public var fingerprint: String?
        /// "factory" (registered by `keyline-sim serve`) or "api" (`/v1/provisioning`).
        public var keySource: String?
        /// The product the device belongs to.
        public var product: String?
    }

    /// Calls per endpoint; `connects` are simulated devices checking their key (not API calls).
    public struct CallCounts: Codable, Sendable, Equatable {
        public var provisioning = 0
        public var productDevices = 0
        /// Provisioning calls answered 200 (a key accepted).
        public var keysAccepted = 0
        public var connects = 0
        public var api: Int { provisioning + productDevices }
    }

    struct PersistedState: Codable {
        var version = 1
        var devices: [String: DeviceRecord]
    }

    let token: String
    /// Products the token may use; empty: any numeric product ID.
    let products: Set<String>
    let stateFile: URL?
    private let saveQueue = DispatchQueue(label: "keyline.simulator.cloud.save")
    let lock = NSLock()
    // Guarded by `lock`.
    var devices: [String: DeviceRecord] = [:]
    var totals = CallCounts()
    var perDevice: [String: CallCounts] = [:]
    var faults = SimulatedCloudFaults()
    var nextRequestID: UInt64 = 1
    var lastSaveError: String?

    /// - Parameters:
    ///   - token: the access token API calls must present (never printed).
    ///   - products: product IDs the token may add devices to (empty: any).
    ///   - stateFile: where the keys held are kept across restarts (loaded now if it exists).
    public init(token: String, products: [String] = [], faults: SimulatedCloudFaults = .init(), stateFile: URL? = nil) throws(SimulatedCloudError) {
        guard !token.isEmpty else { throw .emptyToken }
        self.token = token
        self.products = Set(products)
        self.faults = faults
        self.stateFile = stateFile
        if let stateFile, FileManager.default.fileExists(atPath: stateFile.path) {
            do {
                let state = try JSONDecoder().decode(PersistedState.self, from: Data(contentsOf: stateFile))
                devices = state.devices
            } catch {
                throw .stateFile(path: stateFile.path, detail: "\(error)")
            }
        }
    }

    // MARK: - Views (tests and the `/sim/` endpoints)

    /// The record the cloud holds for a device, if any.
    public func record(for deviceID: String) -> DeviceRecord? { lock.withLock { devices[deviceID] } }

    /// Totals since the cloud started.
    public var callCounts: CallCounts { lock.withLock { totals } }

    public func callCounts(for deviceID: String) -> CallCounts { lock.withLock { perDevice[deviceID] ?? CallCounts() } }

    public var currentFaults: SimulatedCloudFaults { lock.withLock { faults } }

    public func setFaults(_ newFaults: SimulatedCloudFaults) { lock.withLock { faults = newFaults } }

    /// Waits (without blocking a thread) for every state write started so far; the last
    /// write's error, if any.
    public func flushed() async -> String? {
        await withCheckedContinuation { continuation in saveQueue.async { continuation.resume() } }
        return lock.withLock { lastSaveError }
    }

    // MARK: - Request entry point

    /// Answers one request (routing, token, validation, faults, counters).
    public func respond(to request: CloudHTTPRequest, now: Date = Date()) -> CloudHTTPResponse {
        let segments = request.segments
        if segments.first == "sim" { return respondSim(to: request, segments: Array(segments.dropFirst()), now: now) }
        if lock.withLock({ faults.isDown(at: now) }) { return .dropped }
        guard segments.first == "v1" else { return .error(404, "not_found", "no such endpoint: \(request.path)") }
        switch (request.method, Array(segments.dropFirst())) {
        case ("POST", let rest) where rest.count == 2 && rest[0] == "provisioning":
            return apiCall(.provisioning, deviceID: rest[1].lowercased(), request) { provision(pathDeviceID: rest[1], request: request) }
        case ("POST", let rest) where rest.count == 3 && rest[0] == "products" && rest[2] == "devices":
            let id = CloudForm.parse(request.body)?["id"]?.lowercased()
            return apiCall(.productDevices, deviceID: id, request) { addToProduct(rest[1], request: request) }
        case ("GET", ["user"]):
            // particle-cli's `whoami` (GET /v1/user): what `keyline station check` asks to prove a token.
            return checkToken(request) ?? .json(200, ["username": "station@simulated.keyline.invalid"])
        default:
            return .error(404, "not_found", "no such endpoint: \(request.method) \(request.path)")
        }
    }

    enum Endpoint { case provisioning, productDevices }

    /// Counts the call, then applies counted faults and the slow fault, then the token, then `body`.
    private func apiCall(_ endpoint: Endpoint, deviceID: String?, _ request: CloudHTTPRequest,
                         _ body: () -> CloudHTTPResponse) -> CloudHTTPResponse {
        let (fault, delay) = lock.withLock { () -> (CloudHTTPResponse?, Duration) in
            func count(_ counts: inout CallCounts) {
                switch endpoint {
                case .provisioning: counts.provisioning += 1
                case .productDevices: counts.productDevices += 1
                }
            }
            count(&totals)
            if let deviceID { count(&perDevice[deviceID, default: CallCounts()]) }
            let delay = Duration.milliseconds(faults.slowSeconds * 1000)
            if faults.rateLimited > 0 {
                faults.rateLimited -= 1
                var reply = CloudHTTPResponse.error(429, "rate_limited", "Too many requests; retry after \(faults.retryAfterSeconds) s (simulated)")
                reply.retryAfter = faults.retryAfterSeconds
                return (reply, delay)
            }
            if faults.serverErrors > 0 {
                faults.serverErrors -= 1
                return (.error(faults.serverErrorStatus, "server_error", "The simulated cloud failed this request (injected fault)"), delay)
            }
            return (nil, delay)
        }
        var reply = fault ?? checkToken(request) ?? body()
        reply.delay = delay
        return reply
    }

    /// nil if the request carries the token; else the 401 (compared without an early exit).
    func checkToken(_ request: CloudHTTPRequest) -> CloudHTTPResponse? {
        let header = request.headers["authorization"] ?? ""
        guard header.hasPrefix("Bearer ") else {
            return .error(401, "invalid_token", "The access token was not found (send Authorization: Bearer <token>)")
        }
        let presented = Array(header.dropFirst(7).utf8), expected = Array(token.utf8)
        var difference = presented.count ^ expected.count
        for (i, byte) in expected.enumerated() { difference |= Int(byte ^ (i < presented.count ? presented[i] : 0)) }
        return difference == 0 ? nil : .error(401, "invalid_token", "The access token provided is invalid.")
    }

    func makeRequestID() -> String {
        lock.withLock {
            defer { nextRequestID += 1 }
            return String(format: "sim-%08llx", nextRequestID)
        }
    }

    // MARK: - State file

    /// Writes the state (after a change) on the save queue, atomically, owner-only.
    func scheduleSave() {
        guard let stateFile else { return }
        let snapshot = lock.withLock { PersistedState(devices: devices) }
        saveQueue.async {
            do {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                try encoder.encode(snapshot).write(to: stateFile, options: .atomic)
                try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: stateFile.path)
                self.lock.withLock { self.lastSaveError = nil }
            } catch {
                self.lock.withLock { self.lastSaveError = "\(stateFile.path): \(error)" }
            }
        }
    }
}

/// Why the simulated cloud could not start.
public enum SimulatedCloudError: Error, Sendable, Equatable, CustomStringConvertible {
    case emptyToken
    case stateFile(path: String, detail: String)
    case listen(address: String, detail: String)
    case badURL(String)
    case unreachable(url: String, detail: String)

    public var description: String {
        switch self {
        case .emptyToken: "the token file is empty: put the access token API calls must present in it"
        case .stateFile(let path, let detail): "simulated cloud state \(path) cannot be read: \(detail) (remove it to start empty)"
        case .listen(let address, let detail): "the simulated cloud cannot listen on \(address): \(detail)"
        case .badURL(let url): "\(url) is not a simulated cloud URL (http://127.0.0.1:PORT, as `keyline-sim cloud` prints it)"
        case .unreachable(let url, let detail): "the simulated cloud at \(url) did not answer (\(detail)); start it with `keyline-sim cloud` first"
        }
    }
}

extension SimulatedCloudError: ClassifiedError {
    public var failureClass: FailureClass {
        switch self {
        case .unreachable: .retryable
        case .stateFile, .listen: .needsOperator
        case .emptyToken, .badURL: .badInput
        }
    }
}

extension SimulatedCloudFaultError: ClassifiedError {
    public var failureClass: FailureClass { .badInput }
}
