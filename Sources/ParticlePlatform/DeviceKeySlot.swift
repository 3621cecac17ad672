import DeviceKeys

/// What a guarded key write expects the device's private-key slot to hold before it writes.
/// A resumed run knows this from the registry (the fingerprint recorded at `key_ready`), so a
/// key that is already on a device is re-read and escrowed, never replaced by accident.
public enum ExpectedDeviceKey: Sendable, Hashable, CustomStringConvertible {
    /// No key: the slot is blank as Device OS judges it (first byte 0xFF).
    case blank
    /// The key whose public key (SPKI DER) has this SHA-256, lowercase hex.
    case fingerprint(String)
    /// A slot that holds no usable key (corrupt), exactly the bytes whose SHA-256 this is
    /// (lowercase hex; `DeviceKeySlotContent.slotSHA256`): an RMA restore overwrites garbage it
    /// has looked at, never garbage that changed after it looked.
    case slotBytes(sha256: String)

    public var description: String {
        switch self {
        case .blank: "a blank slot (no key)"
        case .fingerprint(let fingerprint): "the key with public key SHA-256 \(fingerprint.lowercased())"
        case .slotBytes(let sha256): "a corrupt slot whose bytes hash to SHA-256 \(sha256.lowercased())"
        }
    }
}

/// What a device's private-key slot holds, as Device OS would read it.
public enum DeviceKeySlotContent: Sendable, CustomStringConvertible {
    /// Erased: Device OS treats it as "no key" and generates one at its next start.
    case blank
    case key(DevicePrivateKey)
    /// Not blank and not a usable key; Device OS will not regenerate it (it checks byte 0 only).
    case corrupt(DeviceKeyError)

    /// The slot read with `DevicePrivateKey(slot:)`, whose `.blankSlot` rule is the one blank rule.
    public init(slot: [UInt8]) {
        do throws(DeviceKeyError) {
            self = .key(try DevicePrivateKey(slot: slot))
        } catch .blankSlot {
            self = .blank
        } catch {
            self = .corrupt(error)
        }
    }

    /// "blank", "corrupt" or the key's public-key fingerprint (`ParticleDeviceError.Reason.unexpectedKey`).
    public var summary: String {
        switch self {
        case .blank: "blank"
        case .key(let key): key.publicKey.fingerprint
        case .corrupt: "corrupt"
        }
    }

    /// Whether this is exactly what `expected` describes (`.slotBytes` needs the raw slot: see
    /// `matches(_:slot:)`).
    public func matches(_ expected: ExpectedDeviceKey) -> Bool {
        switch (self, expected) {
        case (.blank, .blank): true
        case (.key(let key), .fingerprint(let fingerprint)): key.publicKey.fingerprint == fingerprint.lowercased()
        default: false
        }
    }

    /// Whether `slot` (the bytes this content was read from) is exactly what `expected` describes.
    public func matches(_ expected: ExpectedDeviceKey, slot: [UInt8]) -> Bool {
        if case .slotBytes(let sha256) = expected {
            guard case .corrupt = self else { return false }
            return Self.slotSHA256(slot) == sha256.lowercased()
        }
        return matches(expected)
    }

    /// SHA-256 (lowercase hex) of raw slot bytes, for `ExpectedDeviceKey.slotBytes`.
    public static func slotSHA256(_ slot: [UInt8]) -> String {
        SHA256Digest.hex(slot)
    }

    /// Never shows key bytes (a `DevicePrivateKey` describes itself by fingerprint only).
    public var description: String {
        switch self {
        case .blank: "blank key slot"
        case .key(let key): "key slot holding \(key)"
        case .corrupt(let error): "corrupt key slot: \(error)"
        }
    }
}
