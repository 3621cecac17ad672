/// Lowercase hexadecimal, the one encoding keyline writes bytes in: fingerprints and digests as
/// the registry records them, device IDs, USB IDs and bytes quoted in error messages.
public enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)

    /// Two lowercase digits per byte, no separator ("0a1b").
    public static func encode<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.underestimatedCount * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// At most `limit` bytes as space-separated pairs, "…" when there were more ("0a 1b …"): how
    /// a message quotes what a device or a file sent.
    public static func dump(_ bytes: [UInt8], limit: Int = 16) -> String {
        let shown = bytes.prefix(max(0, limit)).map { encode(CollectionOfOne($0)) }.joined(separator: " ")
        return bytes.count > limit ? shown + " …" : shown
    }

    /// A 16-bit value as four lowercase digits (USB vendor and product IDs: "2b04").
    public static func word(_ value: UInt16) -> String {
        encode([UInt8(truncatingIfNeeded: value >> 8), UInt8(truncatingIfNeeded: value)])
    }

    /// The bytes of an even-length string of hex digits (either case), or nil.
    public static func decode(_ text: String) -> [UInt8]? {
        let utf8 = Array(text.utf8)
        guard utf8.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(utf8.count / 2)
        var index = 0
        while index < utf8.count {
            guard let high = nibble(utf8[index]), let low = nibble(utf8[index + 1]) else { return nil }
            out.append(high << 4 | low)
            index += 2
        }
        return out
    }

    /// Whether `text` is exactly `count` lowercase hex digits (ASCII only).
    public static func isLowercase(_ text: String, digits count: Int) -> Bool {
        text.utf8.count == count && text.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }

    private static func nibble(_ character: UInt8) -> UInt8? {
        switch character {
        case 48...57: character - 48
        case 97...102: character - 87
        case 65...70: character - 55
        default: nil
        }
    }
}
