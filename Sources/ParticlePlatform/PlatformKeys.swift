import DeviceKeys

extension Platform {
    /// A new key of the kind this platform's slot holds (RSA-1024 PKCS#1 on TCP platforms, EC P-256
    /// SEC1 on UDP ones), checked against the slot before anyone relies on it.
    public func generateDeviceKey() throws -> DevicePrivateKey {
        let key = try DevicePrivateKey.generate(keyAlgorithm)
        try checkDeviceKey(key)
        return key
    }
}

/// One platform's verdict on a key file (`keys inspect`): whether it can live in that platform's
/// private key slot, and if not, why.
public struct KeySlotVerdict: Sendable {
    public var platform: String
    public var slotSize: Int
    /// The platform and protocol when one was named; the slot kind and who uses it otherwise.
    public var label: String
    public var error: KeySlotError?
    /// The DER the device would hold (private keys only).
    public var derLength: Int?

    /// For `chosen`, or without one, for the slot the key's algorithm lives in (RSA: TCP, EC: UDP).
    public static func verdicts(for parsed: KeyFile, platform chosen: Platform?) -> [KeySlotVerdict] {
        let platforms = chosen.map { [$0] } ?? [parsed.publicKey.algorithm == .rsa ? Platform.photon : Platform.boron]
        return platforms.map { platform in
            let label = chosen != nil ? "\(platform.name) \(platform.cloudProtocol.rawValue.uppercased())"
                : platform.cloudProtocol == .tcp ? "TCP (photon, p1)" : "UDP (electron, gen 3, p2, msom)"
            var refusal: KeySlotError?
            do throws(KeySlotError) {
                if let key = parsed.privateKey { try platform.checkDeviceKey(key) } else { try platform.checkAlgorithm(parsed.publicKey) }
            } catch {
                refusal = error
            }
            return KeySlotVerdict(platform: platform.name, slotSize: platform.privateKeySlot.size, label: label, error: refusal,
                                  derLength: parsed.privateKey?.der.count)
        }
    }
}
