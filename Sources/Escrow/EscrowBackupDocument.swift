import DeviceKeys

/// The backup document's JSON, written without Foundation: JSONSerialization keeps the base64 of
/// the private key in strings and data it frees without clearing, so the one plaintext copy of the
/// document is this function's buffer, allocated once at its final size (no growth leaves a partial
/// copy behind) for the caller to clear after sealing. The bytes are what
/// `JSONSerialization` with `.sortedKeys` and `.withoutEscapingSlashes` writes for the same fields
/// (earlier backups were written that way; `decode` reads either).
enum EscrowBackupDocument {
    static func encode(_ backup: EscrowBackup) -> [UInt8] {
        var fields = backup.metadata
        fields["version"] = nil
        // Keys in sorted order; the private key goes between "platform" and "product".
        var before: [UInt8] = [UInt8(ascii: "{")]
        var after: [UInt8] = []
        for key in fields.keys.sorted() {
            let target = key < "private_key_der" ? 0 : 1
            var member: [UInt8] = []
            appendString(key, to: &member)
            member.append(UInt8(ascii: ":"))
            appendString(fields[key]!, to: &member)
            if target == 0 { before += member + [UInt8(ascii: ",")] } else { after += [UInt8(ascii: ",")] + member }
        }
        appendString("private_key_der", to: &before)
        before += Array(":\"".utf8)
        after.insert(UInt8(ascii: "\""), at: 0)
        after += Array(",\"version\":\(EscrowBackup.version)}".utf8)

        let encodedLength = base64Length(backup.privateKey.derCount)
        var document = [UInt8](repeating: 0, count: before.count + encodedLength + after.count)
        document.withUnsafeMutableBufferPointer { out in
            _ = out.initialize(fromContentsOf: before)
            backup.privateKey.withDER { der in
                base64(der, into: UnsafeMutableBufferPointer(rebasing: out[before.count..<(before.count + encodedLength)]))
            }
            _ = UnsafeMutableBufferPointer(rebasing: out[(before.count + encodedLength)...]).initialize(fromContentsOf: after)
        }
        return document
    }

    static func base64Length(_ count: Int) -> Int { (count + 2) / 3 * 4 }

    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// Standard base64 with padding (RFC 4648 §4), written in place.
    static func base64(_ bytes: UnsafeRawBufferPointer, into out: UnsafeMutableBufferPointer<UInt8>) {
        var index = 0, position = 0
        while index < bytes.count {
            let remaining = bytes.count - index
            let b0 = UInt32(bytes[index])
            let b1 = remaining > 1 ? UInt32(bytes[index + 1]) : 0
            let b2 = remaining > 2 ? UInt32(bytes[index + 2]) : 0
            let group = b0 << 16 | b1 << 8 | b2
            out[position] = alphabet[Int(group >> 18 & 63)]
            out[position + 1] = alphabet[Int(group >> 12 & 63)]
            out[position + 2] = remaining > 1 ? alphabet[Int(group >> 6 & 63)] : UInt8(ascii: "=")
            out[position + 3] = remaining > 2 ? alphabet[Int(group & 63)] : UInt8(ascii: "=")
            index += 3
            position += 4
        }
    }

    /// A JSON string as JSONSerialization writes it: `"` and `\` escaped, control characters as
    /// \b \f \n \r \t or \u00XX, `/` and non-ASCII left as they are (UTF-8).
    static func appendString(_ text: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out += [UInt8(ascii: "\\"), UInt8(ascii: "\"")]
            case UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
            case 0x08: out += Array("\\b".utf8)
            case 0x0C: out += Array("\\f".utf8)
            case 0x0A: out += Array("\\n".utf8)
            case 0x0D: out += Array("\\r".utf8)
            case 0x09: out += Array("\\t".utf8)
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out += Array("\\u00".utf8) + [hex[Int(byte >> 4)], hex[Int(byte & 15)]]
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
