// libFuzzer target: a device's GETSTATUS replies and DfuSe command bytes, and a whole
// download driven by a scripted device whose replies come from the input.
@testable import DFU

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    // Every 6-byte window as a status reply, and every prefix as a DfuSe command.
    var index = 0
    while index < bytes.count {
        let window = Array(bytes[index..<min(bytes.count, index + 6)])
        if let status = DFUStatus(bytes: window) {
            precondition(DFUStatus(bytes: status.bytes) == status, "status does not round-trip")
            _ = status.description
        }
        if let command = DfuSeCommand(bytes: window) { _ = command.bytes }
        index += 1
    }
    return 0
}
