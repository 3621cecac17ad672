import DeviceKeys
import Escrow
import LocalFiles
import ParticlePlatform
import Registry

/// What `keys send` is asked to register: a device (default: the only one attached), a key file
/// (default: DEVICE_ID, then DEVICE_ID.pub.pem), the product, whether to replace an active key.
public struct KeySendRequest: Sendable {
    public var deviceID: String?
    public var file: String?
    public var product: String
    public var supersede: Bool
    /// Recorded with a supersede; default: the new key's fingerprint.
    public var reason: String?
    /// The device's platform when it is not attached (to check the key and escrow it).
    public var platform: Platform?

    public init(deviceID: String?, file: String?, product: String, supersede: Bool, reason: String?, platform: Platform?) {
        self.deviceID = deviceID
        self.file = file
        self.product = product
        self.supersede = supersede
        self.reason = reason
        self.platform = platform
    }
}

/// What `keys send` registered, and the key it superseded.
public struct KeySendReport: Sendable {
    public var deviceID: String
    public var product: String
    /// The key file read.
    public var file: String
    public var registered: KeyRegistration
    public var superseded: KeyRegistration?
    /// What the Particle cloud did with the key.
    public var cloud: BenchCloudUpload.Result
}

/// `keyline keys send` (particle-cli-keys.md §1) with the registry in place of the cloud API: a
/// key the device's platform cannot use is refused, then a key registered to another device; a key
/// is registered only with a recorded backup, so a private key that has none is escrowed first.
public enum KeySend {
    public static func send(_ request: KeySendRequest, escrow settings: BenchEscrowSettings, bus: BenchBus) async throws -> KeySendReport {
        var platform = request.platform
        let id: String
        if let given = request.deviceID {
            id = given.lowercased()
            // An attached device says its platform; one that is not is no error here.
            if platform == nil, let attached = try? await bus.chooseAttached(id) { platform = attached.platform }
        } else {
            guard let attached = try await bus.chooseAttached(nil) else { throw BenchError.noDevices }
            id = attached.deviceID
            if platform == nil { platform = attached.platform }
        }
        let path = try await offPool { KeyFileNames.sent(request.file, deviceID: id) }
        let parsed: KeyFile
        do {
            parsed = try KeyFile.parse(try await offPool { try InputFile.read(path, limit: KeyFile.maximumFileSize, what: "a key file") })
        } catch {
            throw FileContentError(path: path, error: error)
        }
        if let platform {
            do {
                if let key = parsed.privateKey { try platform.checkDeviceKey(key) } else { try platform.checkAlgorithm(parsed.publicKey) }
            } catch {
                throw BenchKeyError.wrongAlgorithm(deviceID: id, platform: platform.name, detail: "\(error)")
            }
        }
        let station = settings.bench
        let registry = try await station.registry(action: "register keys")
        let registration = BenchKeyRegistration(registry: registry, station: station.name)
        try await registration.requireUnclaimed(parsed.publicKey, deviceID: id)
        var backup = try await registration.recordedBackup(of: parsed.publicKey, deviceID: id, product: request.product)
        if backup == nil, let key = parsed.privateKey {
            guard let platform else { throw BenchEscrowError.platformNeeded(deviceID: id) }
            let escrow = try await offPool { try settings.escrow(registry, station: station.name) }
            backup = try await escrow.escrow(
                key, deviceID: id, platform: platform.name, product: request.product, label: "keys-send",
                reason: "escrowed by keys send")
        }
        let (registered, superseded) = try await registration.register(
            parsed.publicKey, deviceID: id, product: request.product, backup: backup, supersede: request.supersede,
            reason: request.reason ?? "keys send: replaced by \(parsed.publicKey.fingerprint)")
        // As particle-cli: the key goes to the cloud (through the outbox, so it is never lost or sent twice).
        let cloud = try await BenchCloudUpload.send(registered, registry: registry, station: station.name)
        return KeySendReport(deviceID: id, product: request.product, file: path, registered: registered, superseded: superseded,
                             cloud: cloud)
    }
}
