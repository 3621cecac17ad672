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
        OpenSSLDigest.sha256(slot).map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
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

extension ParticleDFUDevice {
    /// What the private-key slot holds: blank, a key, or something corrupt. Only the transfer
    /// can fail; the slot's content is the answer, not an error.
    public func readKeySlot() async throws(ParticleDeviceError) -> DeviceKeySlotContent {
        DeviceKeySlotContent(slot: try await readPrivateKeySlot())
    }

    /// Writes `key` into the platform's slot, but only over what the caller says is there.
    ///
    /// Reads the slot first and refuses with `.unexpectedKey(found:)` — writing nothing — unless
    /// it holds exactly `replacing` (blank, or the key with that fingerprint). Then writes the DER
    /// followed by 0xFF to the end of the slot (as Device OS's own setter does, so no tail of an
    /// older key remains) and verifies it by read-back. A slot that already holds exactly these
    /// bytes is left alone: a resumed run repeating the write costs no flash erase.
    public func writePrivateKey(_ key: DevicePrivateKey, replacing expected: ExpectedDeviceKey) async throws(ParticleDeviceError) {
        let slot = platform.privateKeySlot
        // The same check as `keyline keys inspect --platform`, before touching the device.
        do { try platform.checkDeviceKey(key) } catch { throw fail(.writeKey, .keySlot(error)) }
        let current = try await readDCT(slot, step: .writeKey)
        let content = DeviceKeySlotContent(slot: current)
        guard content.matches(expected, slot: current) else {
            throw ParticleDeviceError(step: .writeKey, deviceID: deviceID, port: port,
                                      reason: .unexpectedKey(found: content.summary), expectedKey: expected)
        }
        let bytes = key.der + [UInt8](repeating: 0xFF, count: slot.size - key.der.count)
        if current == bytes { return }
        try await writeDCT(bytes, at: slot, step: .writeKey)
    }
}
