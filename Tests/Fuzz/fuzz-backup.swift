// libFuzzer target: decrypted backup documents as `escrow show` and `keyline restore` validate
// them. A document that decodes must encode to one that decodes to the same backup.
@testable import Escrow

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    _ = StrictJSON.duplicateKey(in: bytes)
    guard let backup = try? EscrowBackup.decode(bytes) else { return 0 }
    let again = try? EscrowBackup.decode(backup.encoded())
    precondition(again?.metadata == backup.metadata && again?.privateKey.der == backup.privateKey.der, "backup does not round-trip")
    return 0
}
