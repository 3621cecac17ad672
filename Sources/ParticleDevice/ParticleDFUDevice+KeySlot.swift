import DeviceKeys
import ParticlePlatform

// Reading and guarded writing of the private-key slot (what a slot holds: ParticlePlatform's DeviceKeySlot).
extension ParticleDFUDevice {
    /// What the private-key slot holds: blank, a key, or something corrupt. Only the transfer
    /// can fail; the slot's content is the answer, not an error.
    public func readKeySlot() async throws(ParticleDeviceError) -> DeviceKeySlotContent {
        var slot = try await readPrivateKeySlot()
        defer { SecretBytes.clear(&slot) }
        return DeviceKeySlotContent(slot: slot)
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
        // Both buffers hold a private key: cleared on every way out.
        var current = try await readDCT(slot, step: .writeKey)
        defer { SecretBytes.clear(&current) }
        let content = DeviceKeySlotContent(slot: current)
        guard content.matches(expected, slot: current) else {
            throw ParticleDeviceError(step: .writeKey, deviceID: deviceID, port: port,
                                      reason: .unexpectedKey(found: content.summary), expectedKey: expected)
        }
        var bytes = key.slotImage(size: slot.size)
        defer { SecretBytes.clear(&bytes) }
        if current == bytes { return }
        try await writeDCT(bytes, at: slot, step: .writeKey)
    }
}
