import DeviceKeys
import ParticlePlatform

/// `keyline keys new`: a key pair for a platform's slot, made in memory (the command writes the
/// files). Without a platform, as `particle keys new`, the platform is learned from the device
/// (the one named, or the only one attached); with none attached and none named, the key is EC
/// (every current platform).
public struct NewDeviceKey: Sendable {
    public var key: DevicePrivateKey
    public var platform: Platform?
    /// The device the platform was learned from.
    public var deviceID: String?

    public var algorithm: KeyAlgorithm { key.algorithm }

    public static func make(platform: Platform?, device deviceID: String?, on bus: BenchBus) async throws -> NewDeviceKey {
        var (platform, learnedFrom) = (platform, String?.none)
        if platform == nil, let attached = try await bus.chooseAttached(deviceID) {
            (learnedFrom, platform) = (attached.deviceID, attached.platform)
        }
        let key = try platform?.generateDeviceKey() ?? DevicePrivateKey.generate(.ec)
        return NewDeviceKey(key: key, platform: platform, deviceID: learnedFrom)
    }

    /// NAME.pem, NAME.pub.pem and NAME.der; NAME defaults to the device ID, then device_<alg>.
    public func files(named name: String?) -> [String] {
        let base = KeyFileNames.base(name ?? deviceID ?? "device_\(algorithm.rawValue)")
        return ["\(base).pem", "\(base).pub.pem", "\(base).der"]
    }
}
