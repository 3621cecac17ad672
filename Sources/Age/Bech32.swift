/// Bech32 (BIP 173, checksum constant 1) as age uses it for `age1…` recipients and
/// `AGE-SECRET-KEY-1…` identities. age lifts BIP 173's 90-character limit
/// (age-encryption.org/v1, "The X25519 recipient type"), so there is none here.
enum Bech32 {
    private static let charset = Array("qpzry9x8gf2tvdw0s3jn54khce6mua7l".utf8)
    private static let reverse: [Int8] = {
        var table = [Int8](repeating: -1, count: 128)
        for (index, char) in charset.enumerated() { table[Int(char)] = Int8(index) }
        return table
    }()

    enum Failure: Error, Equatable {
        case mixedCase, noSeparator, emptyHumanReadablePart, invalidCharacter, badChecksum, tooShort, badPadding
    }

    private static func polymod(_ values: [UInt8]) -> UInt32 {
        let generator: [UInt32] = [0x3b6a_57b2, 0x2650_8e6d, 0x1ea1_19fa, 0x3d42_33dd, 0x2a14_62b3]
        var checksum: UInt32 = 1
        for value in values {
            let top = checksum >> 25
            checksum = (checksum & 0x1ff_ffff) << 5 ^ UInt32(value)
            for bit in 0..<5 where (top >> UInt32(bit)) & 1 == 1 { checksum ^= generator[bit] }
        }
        return checksum
    }

    private static func expand(_ hrp: [UInt8]) -> [UInt8] {
        hrp.map { $0 >> 5 } + [0] + hrp.map { $0 & 31 }
    }

    /// Regroups bits; `pad` is true when encoding. Decoding rejects leftover bits that are
    /// non-zero or a whole group, as BIP 173 requires.
    private static func regroup(_ data: [UInt8], from: Int, to: Int, pad: Bool) throws(Failure) -> [UInt8] {
        var accumulator = 0, bits = 0
        var out: [UInt8] = []
        let maxValue = (1 << to) - 1
        for value in data {
            accumulator = (accumulator << from) | Int(value)
            bits += from
            while bits >= to {
                bits -= to
                out.append(UInt8((accumulator >> bits) & maxValue))
            }
            accumulator &= (1 << bits) - 1
        }
        if pad {
            if bits > 0 { out.append(UInt8((accumulator << (to - bits)) & maxValue)) }
        } else if bits >= from || accumulator != 0 {
            throw .badPadding
        }
        return out
    }

    /// Encodes `data` under the lowercase human-readable part `hrp`, lowercase.
    static func encode(hrp: String, data: [UInt8]) -> String {
        let hrpBytes = Array(hrp.lowercased().utf8)
        let values = try! regroup(data, from: 8, to: 5, pad: true)
        let mod = polymod(expand(hrpBytes) + values + [0, 0, 0, 0, 0, 0]) ^ 1
        let checksum = (0..<6).map { UInt8((mod >> UInt32(5 * (5 - $0))) & 31) }
        return String(decoding: hrpBytes + [UInt8(ascii: "1")] + (values + checksum).map { charset[Int($0)] }, as: UTF8.self)
    }

    /// Decodes a Bech32 string (either case, never mixed).
    static func decode(_ string: String) throws(Failure) -> (hrp: String, data: [UInt8]) {
        let bytes = Array(string.utf8)
        var hasLower = false, hasUpper = false
        for byte in bytes {
            guard byte >= 33 && byte <= 126 else { throw .invalidCharacter }
            if byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z") { hasLower = true }
            if byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") { hasUpper = true }
        }
        if hasLower && hasUpper { throw .mixedCase }
        let lower = bytes.map { $0 >= 65 && $0 <= 90 ? $0 + 32 : $0 }
        guard let separator = lower.lastIndex(of: UInt8(ascii: "1")) else { throw .noSeparator }
        guard separator > 0 else { throw .emptyHumanReadablePart }
        guard lower.count - separator - 1 >= 6 else { throw .tooShort }
        let hrp = Array(lower[..<separator])
        var values: [UInt8] = []
        values.reserveCapacity(lower.count - separator - 1)
        for byte in lower[(separator + 1)...] {
            guard byte < 128, reverse[Int(byte)] >= 0 else { throw .invalidCharacter }
            values.append(UInt8(reverse[Int(byte)]))
        }
        guard polymod(expand(hrp) + values) == 1 else { throw .badChecksum }
        let data = try regroup(Array(values.dropLast(6)), from: 5, to: 8, pad: false)
        // The prefix comes back in its original case: age accepts recipients only in lowercase and
        // identities only in uppercase, as `age` itself does.
        return (String(decoding: bytes[..<separator], as: UTF8.self), data)
    }
}
