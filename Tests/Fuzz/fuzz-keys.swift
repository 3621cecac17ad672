// libFuzzer target: key files as `keys inspect`, `escrow backup` and `keys load` read them (PEM or
// DER, any structure, slot dumps), and a device's slot bytes; every key that parses is checked
// against every platform's slot.
@testable import DeviceKeys
import ParticlePlatform

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if let parsed = try? KeyFile.parse(bytes) {
        _ = parsed.publicKey.fingerprint
        if let key = parsed.privateKey {
            for platform in Platform.all { _ = try? platform.checkDeviceKey(key) }
            precondition((try? DevicePrivateKey(der: key.der))?.der == key.der, "device DER does not parse back")
        }
    }
    _ = DeviceKeySlotContent(slot: Array(bytes.prefix(KeyFile.largestSlotDump)))
    _ = try? DevicePublicKey(spkiDER: bytes)
    return 0
}
