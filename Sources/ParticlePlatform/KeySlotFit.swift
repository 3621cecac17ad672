import DeviceKeys
import FailurePolicy

/// Whether a device key can live in a platform's private key slot and be used by Device OS.
public enum KeySlotError: Error, Sendable, Equatable, CustomStringConvertible {
    case wrongAlgorithm(platform: String, expected: KeyAlgorithm, found: KeyAlgorithm)
    case tooLarge(platform: String, keyLength: Int, slotSize: Int, detail: String)
    case unsupportedKeySize(platform: String, bits: Int)
    case unsupportedExponent(platform: String, exponent: UInt64?)
    case unexpectedLayout(platform: String)

    public var description: String {
        switch self {
        case let .wrongAlgorithm(platform, expected, found):
            "\(platform) devices use \(expected == .rsa ? "RSA-1024 (TCP)" : "EC P-256 (UDP)") keys; this is an \(found.displayName) key. Generate one with: keyline keys new --platform \(platform)"
        case let .tooLarge(platform, length, size, detail):
            "the key is \(length) bytes but the \(platform) key slot holds \(size): \(detail)"
        case let .unsupportedKeySize(platform, bits):
            "\(platform) devices use RSA-1024; this key is RSA-\(bits)"
        case let .unsupportedExponent(platform, exponent):
            "\(platform) devices need public exponent 65537 (Device OS assumes it); this key has \(exponent.map(String.init) ?? "a huge one")"
        case let .unexpectedLayout(platform):
            "the key's PKCS#1 layout does not put the modulus where Device OS reads it (offset 11); \(platform) could not derive its public key"
        }
    }
}

extension KeySlotError: ClassifiedError {
    /// The key given does not suit the platform: the input (key file, pipeline) is wrong.
    public var failureClass: FailureClass { .badInput }
}

extension Platform {
    /// Checks `key` against this platform's slot and what Device OS assumes of it.
    public func checkDeviceKey(_ key: DevicePrivateKey) throws(KeySlotError) {
        try checkAlgorithm(key.publicKey)
        let size = privateKeySlot.size
        if key.der.count > size {
            let detail = key.algorithm == .rsa && key.publicKey.bits > 1024
                ? "RSA-\(key.publicKey.bits) is too large; TCP devices use RSA-1024"
                : "it would be truncated on the device"
            throw .tooLarge(platform: name, keyLength: key.der.count, slotSize: size, detail: detail)
        }
        guard key.algorithm == .rsa else { return }
        guard key.publicKey.bits == 1024 else { throw .unsupportedKeySize(platform: name, bits: key.publicKey.bits) }
        guard key.publicKey.rsaPublicExponent == 65537 else {
            throw .unsupportedExponent(platform: name, exponent: key.publicKey.rsaPublicExponent)
        }
        // `extract_public_rsa_key()` copies the 128-byte modulus from privkey + 11, behind
        // `30 82 LL LL 02 01 00 02 81 81 00` (device-os-keys.md §1.3).
        guard key.der.count > 11 + 128, key.der[7..<11].elementsEqual([0x02, 0x81, 0x81, 0x00]) else {
            throw .unexpectedLayout(platform: name)
        }
    }

    /// Checks that a public key is of the kind this platform's devices hold.
    public func checkAlgorithm(_ key: DevicePublicKey) throws(KeySlotError) {
        guard key.algorithm == keyAlgorithm else {
            throw .wrongAlgorithm(platform: name, expected: keyAlgorithm, found: key.algorithm)
        }
    }
}
