// libFuzzer target: what a USB device sends before keyline trusts it — memory-layout strings
// (the alt settings' iInterface), device/configuration/DFU functional/string descriptors — and
// the DfuSe and DFU-suffix files an operator gives. The first byte picks the parser.
@testable import DFU

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    switch data[0] % 7 {
    case 0, 1:
        guard let layout = try? DfuSeMemoryLayout(parsing: String(decoding: bytes, as: UTF8.self)) else { return 0 }
        // What the client does with a layout: find segments and sectors for a write of up to 64 KiB.
        let start = layout.segments[0].start
        let length = Int(bytes.count) * 257 % 65_536 + 1
        _ = layout.segments(covering: start, length: length)
        _ = layout.erasableSectors(covering: start, length: length)
        _ = layout.isProtected
        _ = layout.size
        // The canonical string parses back to the same segments.
        let again = try? DfuSeMemoryLayout(parsing: layout.layoutString)
        precondition(again?.segments == layout.segments, "layout string does not round-trip: \(layout.layoutString)")
    case 2:
        _ = try? USBDeviceDescriptor(bytes: bytes)
        _ = try? DFUFunctionalDescriptor(bytes: bytes)
    case 3:
        if let configuration = try? USBConfiguration(bytes: bytes) { _ = configuration.bytes }
    case 4:
        _ = try? USBStringDescriptor.decode(bytes)
    case 5:
        _ = try? DfuSeFile(bytes: bytes)
    default:
        if let suffix = DFUFileSuffix(file: bytes) { _ = suffix.appended(to: []) }
    }
    return 0
}
