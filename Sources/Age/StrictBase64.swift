/// Base64 (RFC 4648 §4, standard alphabet) with the strictness age requires: header
/// stanzas and the MAC use it unpadded, armor padded, and both only in canonical form
/// (unused trailing bits zero), so each file has exactly one encoding
/// (age-encryption.org/v1, "Header"; C2SP `*_not_canonical` vectors).
enum StrictBase64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    private static let reverse: [Int8] = {
        var table = [Int8](repeating: -1, count: 256)
        for (index, char) in alphabet.enumerated() { table[Int(char)] = Int8(index) }
        return table
    }()

    static func encode<C: Collection>(_ data: C, padded: Bool) -> [UInt8] where C.Element == UInt8 {
        var out: [UInt8] = []
        out.reserveCapacity((data.count + 2) / 3 * 4)
        var iterator = data.makeIterator()
        while let b0 = iterator.next() {
            let b1 = iterator.next(), b2 = iterator.next()
            out.append(alphabet[Int(b0 >> 2)])
            out.append(alphabet[Int((b0 & 0x03) << 4 | (b1 ?? 0) >> 4)])
            if let b1 {
                out.append(alphabet[Int((b1 & 0x0f) << 2 | (b2 ?? 0) >> 6)])
            } else if padded { out.append(UInt8(ascii: "=")) }
            if let b2 {
                out.append(alphabet[Int(b2 & 0x3f)])
            } else if padded { out.append(UInt8(ascii: "=")) }
        }
        return out
    }

    static func encodeString<C: Collection>(_ data: C, padded: Bool) -> String where C.Element == UInt8 {
        String(decoding: encode(data, padded: padded), as: UTF8.self)
    }

    /// Returns nil for anything that is not the canonical encoding.
    static func decode<C: Collection>(_ text: C, padded: Bool) -> [UInt8]? where C.Element == UInt8 {
        var symbols = Array(text)
        if padded {
            guard symbols.count % 4 == 0 else { return nil }
            var padding = 0
            while padding < 2, symbols.last == UInt8(ascii: "=") { symbols.removeLast(); padding += 1 }
        } else if symbols.count % 4 == 1 {
            return nil
        }
        guard symbols.count % 4 != 1 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(symbols.count * 3 / 4)
        var accumulator: UInt32 = 0, bits = 0
        for symbol in symbols {
            let value = reverse[Int(symbol)]
            guard value >= 0 else { return nil }
            accumulator = accumulator << 6 | UInt32(value)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: accumulator >> UInt32(bits)))
                accumulator &= (1 << UInt32(bits)) - 1
            }
        }
        // Leftover bits must be zero: otherwise two strings decode to the same bytes.
        guard accumulator == 0 else { return nil }
        return out
    }
}
