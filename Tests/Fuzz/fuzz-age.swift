// libFuzzer target: age files as `escrow show|verify|decrypt` read them — the header, the ASCII
// armor, and decryption with a fixed identity (a file for another identity must fail cleanly) —
// and identity and recipient files.
import Age

let identity = try! X25519Identity.parseFile("AGE-SECRET-KEY-1GXX0AZR8655SR77WPLMJW70XGRUAP4RH0NNL7VJMA70V9NSSGHSQWWSV8X").first!

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    _ = try? Age.header(of: bytes)
    if AgeArmor.isArmored(bytes), let binary = try? AgeArmor.decode(bytes) {
        precondition((try? AgeArmor.decode(AgeArmor.encode(binary))) == binary, "armor does not round-trip")
    }
    _ = try? Age.decrypt(bytes, identities: [identity])
    let text = String(decoding: bytes, as: UTF8.self)
    _ = try? X25519Identity.parseFile(text)
    _ = try? X25519Recipient.parseFile(text)
    return 0
}
