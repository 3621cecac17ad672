/// The 16-byte DFU file suffix (DFU 1.1 appendix B, reference dfu-protocol.md §1.6), as dfu-util's
/// `dfu_file.c` reads and dfu-suffix writes it.

public struct DFUFileSuffix: Sendable, Hashable {
    public static let length = 16

    public var deviceVersion: UInt16
    public var productID: UInt16
    public var vendorID: UInt16
    /// 0x0100 plain DFU, 0x011A DfuSe.
    public var dfuVersion: UInt16

    public init(deviceVersion: UInt16 = 0xFFFF, productID: UInt16 = 0xFFFF, vendorID: UInt16 = 0xFFFF, dfuVersion: UInt16 = 0x0100) {
        self.deviceVersion = deviceVersion
        self.productID = productID
        self.vendorID = vendorID
        self.dfuVersion = dfuVersion
    }

    /// CRC-32 (reflected 0xEDB88320, init 0xFFFFFFFF) with **no** final XOR, over all but the last 4 bytes.
    public static func crc(_ bytes: some Collection<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc = crcTable[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8)
        }
        return crc
    }

    private static let crcTable: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    /// Parses the suffix at the end of `file`; nil when there is no valid one (signature, length or CRC).
    public init?(file: [UInt8]) {
        guard file.count >= Self.length else { return nil }
        let s = Array(file.suffix(Self.length))
        guard s[8] == UInt8(ascii: "U"), s[9] == UInt8(ascii: "F"), s[10] == UInt8(ascii: "D"), s[11] == 16,
              le32(s, 12) == Self.crc(file.dropLast(4)) else { return nil }
        self.init(deviceVersion: le16(s, 0), productID: le16(s, 2), vendorID: le16(s, 4), dfuVersion: le16(s, 6))
    }

    /// `file` with this suffix appended.
    public func appended(to file: [UInt8]) -> [UInt8] {
        var out = file + le16Bytes(deviceVersion) + le16Bytes(productID) + le16Bytes(vendorID) + le16Bytes(dfuVersion)
            + [UInt8(ascii: "U"), UInt8(ascii: "F"), UInt8(ascii: "D"), 16]
        out += le32Bytes(Self.crc(out))
        return out
    }

    /// The payload of a file: without its suffix when it has a valid one.
    public static func payload(of file: [UInt8]) -> [UInt8] {
        DFUFileSuffix(file: file) == nil ? file : Array(file.dropLast(length))
    }
}
