/// Just enough DER (ITU-T X.690 §8.1) to find where a key ends in a raw slot dump and to tell the
/// key structures apart before handing them to OpenSSL. Parsing proper is OpenSSL's job.
enum DER {
    struct Header {
        var tag: UInt8
        /// Bytes of tag + length.
        var headerLength: Int
        var contentLength: Int
        var totalLength: Int { headerLength + contentLength }
    }

    /// Reads a tag-length header at `offset`. Returns nil when the length encoding is invalid or
    /// longer than any key we handle (4 length bytes); the content may extend past `bytes`.
    static func header(_ bytes: [UInt8], at offset: Int = 0) -> Header? {
        guard offset + 2 <= bytes.count else { return nil }
        let tag = bytes[offset]
        let first = bytes[offset + 1]
        if first < 0x80 { return Header(tag: tag, headerLength: 2, contentLength: Int(first)) }
        let count = Int(first & 0x7F)
        // 0x80 is BER's indefinite length, not allowed in DER; more than 4 bytes is not a key.
        guard count >= 1, count <= 4, offset + 2 + count <= bytes.count else { return nil }
        var length = 0
        for i in 0..<count { length = (length << 8) | Int(bytes[offset + 2 + i]) }
        // DER requires the shortest form.
        guard length >= 0x80, bytes[offset + 2] != 0 else { return nil }
        return Header(tag: tag, headerLength: 2 + count, contentLength: length)
    }

    static let sequence: UInt8 = 0x30
    static let integer: UInt8 = 0x02
    static let octetString: UInt8 = 0x04
    static let bitString: UInt8 = 0x03

    /// The key structures we accept, told apart by the first fields of the outer SEQUENCE.
    static func classify(_ bytes: [UInt8]) -> KeyEncoding? {
        guard let outer = header(bytes), outer.tag == sequence,
              let first = header(bytes, at: outer.headerLength) else { return nil }
        let firstContent = outer.headerLength + first.headerLength
        switch first.tag {
        case sequence:
            // SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, BIT STRING } (RFC 5280 §4.1)
            return .spki
        case integer:
            guard let second = header(bytes, at: firstContent + first.contentLength) else { return nil }
            let version: Int? = first.contentLength == 1 && firstContent < bytes.count ? Int(bytes[firstContent]) : nil
            switch (version, second.tag) {
            case (0, sequence): return .pkcs8          // PrivateKeyInfo (RFC 5208 §5)
            case (0, integer):                          // RSAPrivateKey version 0 (RFC 8017 A.1.2) …
                return first.contentLength == 1 && second.contentLength > 8 ? .pkcs1 : nil
            case (1, octetString): return .sec1         // ECPrivateKey (RFC 5915 §3)
            default:
                // RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER } (RFC 8017 A.1.1)
                return second.tag == integer && first.contentLength > 8 ? .pkcs1Public : nil
            }
        default:
            return nil
        }
    }
}

/// How a key was encoded where we found it.
public enum KeyEncoding: String, Sendable, Codable {
    /// RSAPrivateKey, RFC 8017 A.1.2 — what a TCP device holds at DCT 34.
    case pkcs1 = "PKCS#1"
    /// ECPrivateKey, RFC 5915 — what a UDP device holds at DCT 3106.
    case sec1 = "SEC1"
    /// PrivateKeyInfo, RFC 5208 — OpenSSL 3's default output; too long for a device slot.
    case pkcs8 = "PKCS#8"
    /// SubjectPublicKeyInfo, RFC 5280 §4.1 — `BEGIN PUBLIC KEY`.
    case spki = "SubjectPublicKeyInfo"
    /// RSAPublicKey, RFC 8017 A.1.1 — `BEGIN RSA PUBLIC KEY`.
    case pkcs1Public = "PKCS#1 RSAPublicKey"
}
