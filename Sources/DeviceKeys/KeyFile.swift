/// Reads a key file the way `particle keys send` accepts one — PEM or DER, private or public,
/// RSA or EC (particle-cli-keys.md §1) — and says what it found.
public struct KeyFile: Sendable {
    public enum Container: String, Sendable, Codable {
        case pem = "PEM"
        case der = "DER"
        /// A raw DCT slot dump: DER followed by 0xFF fill or leftover bytes (`keys save` output).
        case slotDump = "DCT slot dump"
    }

    public enum Material: Sendable {
        case privateKey(DevicePrivateKey)
        case publicKey(DevicePublicKey)
    }

    public let material: Material
    public let container: Container
    /// The structure the key was stored in. A PKCS#8 private key is converted: `material` holds the
    /// device format (PKCS#1 / SEC1).
    public let encoding: KeyEncoding

    public var publicKey: DevicePublicKey {
        switch material {
        case .privateKey(let key): key.publicKey
        case .publicKey(let key): key
        }
    }

    public var privateKey: DevicePrivateKey? {
        if case .privateKey(let key) = material { key } else { nil }
    }

    /// The largest key file keyline reads: an RSA-4096 PKCS#8 PEM (the largest key it describes) is
    /// 3.3 KB. Anything larger is refused before it is parsed, so a huge or endless input costs
    /// nothing (a 16 MB random file took 15 s to refuse before this bound).
    public static let maximumFileSize = 8 * 1024
    /// The largest device private-key slot (the Core's 1024 bytes in external flash; every later
    /// platform's is 612 or 192, ParticleDeviceTests checks the platform table against it): a
    /// slot dump is never longer.
    public static let largestSlotDump = 1024

    /// Parses file contents. DER followed by extra bytes is read as a slot dump, as `keys save`
    /// writes the whole 612- or 192-byte segment; longer than any slot, it is refused.
    public static func parse(_ bytes: [UInt8]) throws(DeviceKeyError) -> KeyFile {
        guard !bytes.isEmpty else { throw .empty }
        guard bytes.count <= maximumFileSize else { throw .fileTooLarge(size: bytes.count, limit: maximumFileSize) }
        if PEMArmor.looksLikePEM(bytes) { return try parsePEM(bytes) }
        if bytes[0] == 0xFF, bytes.allSatisfy({ $0 == 0xFF }) { throw .blankSlot(slotSize: bytes.count) }
        return try parseDER(bytes, allowTrailing: true)
    }

    static func parsePEM(_ bytes: [UInt8]) throws(DeviceKeyError) -> KeyFile {
        guard let blocks = PEMArmor.blocks(bytes) else {
            throw .malformedPEM(reason: "no BEGIN/END block with a valid base64 body could be read")
        }
        // `openssl ecparam -genkey` writes an EC PARAMETERS block before the key; skip such blocks.
        let keyLabels: Set = ["RSA PRIVATE KEY", "EC PRIVATE KEY", "PRIVATE KEY", "PUBLIC KEY", "RSA PUBLIC KEY", "ENCRYPTED PRIVATE KEY"]
        let keyBlocks = blocks.filter { keyLabels.contains($0.label) }
        guard let block = keyBlocks.first else { throw .noKeyInPEM(labels: blocks.map(\.label)) }
        // Using the first of several would silently pick a key the operator may not have meant.
        guard keyBlocks.count == 1 else { throw .severalKeysInPEM(count: keyBlocks.count) }
        guard !block.encrypted else { throw .encryptedPEM }
        let expected: KeyEncoding = switch block.label {
        case "RSA PRIVATE KEY": .pkcs1
        case "EC PRIVATE KEY": .sec1
        case "PRIVATE KEY": .pkcs8
        case "RSA PUBLIC KEY": .pkcs1Public
        default: .spki
        }
        let parsed = try parseDER(block.der, allowTrailing: false)
        guard parsed.encoding == expected else {
            throw .malformedPEM(reason: "the \(block.label) block holds a \(parsed.encoding.rawValue) structure")
        }
        return KeyFile(material: parsed.material, container: .pem, encoding: parsed.encoding)
    }

    static func parseDER(_ bytes: [UInt8], allowTrailing: Bool) throws(DeviceKeyError) -> KeyFile {
        guard !bytes.isEmpty else { throw .empty }
        guard bytes[0] == DER.sequence, let header = DER.header(bytes) else { throw .notAKey }
        let encoding = DER.classify(bytes)
        guard header.totalLength <= bytes.count else {
            throw .truncated(encoding: encoding, expected: header.totalLength, actual: bytes.count)
        }
        guard let encoding else { throw .notAKey }
        if header.totalLength < bytes.count, !allowTrailing {
            throw .trailingBytes(keyLength: header.totalLength, fileLength: bytes.count)
        }
        if header.totalLength < bytes.count, bytes.count > largestSlotDump {
            throw .tooLongForSlotDump(keyLength: header.totalLength, fileLength: bytes.count, largestSlot: largestSlotDump)
        }
        // May be private key bytes: cleared once OpenSSL has read them.
        var der = Array(bytes.prefix(header.totalLength))
        defer { SecretBytes.clear(&der) }
        let container: Container = header.totalLength < bytes.count ? .slotDump : .der
        switch encoding {
        case .pkcs1, .sec1, .pkcs8:
            guard let key = OpenSSLKey.decodePrivate(der, as: encoding) else {
                throw .malformedDER(encoding: encoding, reason: OpenSSLKey.lastError())
            }
            return KeyFile(material: .privateKey(try DevicePrivateKey(key)), container: container, encoding: encoding)
        case .spki, .pkcs1Public:
            guard let key = OpenSSLKey.decodePublic(der, as: encoding) else {
                throw .malformedDER(encoding: encoding, reason: OpenSSLKey.lastError())
            }
            return KeyFile(material: .publicKey(try DevicePublicKey(key)), container: container, encoding: encoding)
        }
    }
}
