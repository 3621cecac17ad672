/// The two key algorithms Particle devices use (particle-cli-keys.md §4–§5).
public enum KeyAlgorithm: String, Sendable, Codable, CaseIterable {
    /// RSA-1024, e = 65537, PKCS#1 DER — TCP platforms (Core, Photon, P1).
    case rsa
    /// EC P-256 (prime256v1), SEC1 DER — UDP platforms (Electron, Gen 3, P2, M-SoM).
    case ec

    public var displayName: String { self == .rsa ? "RSA" : "EC" }
}

/// A public key as the cloud sees it: SubjectPublicKeyInfo DER, identified by its fingerprint.
public struct DevicePublicKey: Sendable, Hashable, CustomStringConvertible {
    public let algorithm: KeyAlgorithm
    /// Modulus bits for RSA, 256 for P-256.
    public let bits: Int
    /// OpenSSL's curve name for EC keys ("prime256v1").
    public let curve: String?
    public let rsaPublicExponent: UInt64?
    /// SubjectPublicKeyInfo DER (RFC 5280 §4.1).
    public let spkiDER: [UInt8]
    /// `-----BEGIN PUBLIC KEY-----`, what `particle keys send` uploads.
    public let pem: String
    /// SHA-256 of the SPKI DER, lowercase hex: the key's identity in escrow and the registry.
    public let fingerprint: String

    /// Reads SubjectPublicKeyInfo DER.
    public init(spkiDER: [UInt8]) throws(DeviceKeyError) {
        guard !spkiDER.isEmpty else { throw .empty }
        guard DER.classify(spkiDER) == .spki else { throw .notAKey }
        guard let key = OpenSSLKey.decodePublic(spkiDER, as: .spki) else {
            throw .malformedDER(encoding: .spki, reason: OpenSSLKey.lastError())
        }
        try self.init(key)
    }

    init(_ key: OpenSSLKey) throws(DeviceKeyError) {
        let algorithm = try KeyAlgorithm(checking: key)
        guard let spki = key.spkiDER(), let pem = key.publicPEM() else {
            throw .malformedDER(encoding: .spki, reason: OpenSSLKey.lastError())
        }
        self.algorithm = algorithm
        self.bits = key.bits
        self.curve = algorithm == .ec ? key.groupName : nil
        self.rsaPublicExponent = algorithm == .rsa ? key.rsaPublicExponent : nil
        self.spkiDER = spki
        self.pem = pem
        self.fingerprint = SHA256Digest.hex(spki)
    }

    public var description: String {
        "\(algorithm.displayName)-\(curve ?? String(bits)) public key \(fingerprint)"
    }
}

/// A device private key in the form the device stores it: PKCS#1 DER for RSA, SEC1 DER for EC.
///
/// `description`, `debugDescription` and reflection never show the key bytes, so a key that ends up
/// in a log line or an error shows only its algorithm and public fingerprint.
public struct DevicePrivateKey: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public let algorithm: KeyAlgorithm
    /// PKCS#1 RSAPrivateKey (RSA) or SEC1 ECPrivateKey (EC) DER: the bytes written to the DCT,
    /// cleared from memory when the last copy of this key goes (`SecretBytes`).
    public let secret: SecretBytes
    public let publicKey: DevicePublicKey

    /// A copy of the DER the caller owns: clear it (`SecretBytes.clear`) when done. Code that only
    /// reads the bytes uses `withDER`, which makes no copy.
    public var der: [UInt8] { secret.copy() }

    /// The DER's length (what a key slot must hold).
    public var derCount: Int { secret.count }

    /// Reads the DER in place, without copying it out.
    public func withDER<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try secret.withUnsafeBytes(body)
    }

    /// A new key as Device OS would make it: RSA-1024 with e = 65537 or EC P-256
    /// (`gen_rsa_key()` / `gen_ec_key()`, device-os-keys.md §1.3).
    public static func generate(_ algorithm: KeyAlgorithm) throws(DeviceKeyError) -> DevicePrivateKey {
        try DevicePrivateKey(OpenSSLKey.generate(algorithm))
    }

    /// Reads a private key from DER: PKCS#1, SEC1 or PKCS#8 (converted to the device format).
    /// The DER must be exactly one key; use `init(slot:)` for a raw DCT slot dump.
    public init(der: [UInt8]) throws(DeviceKeyError) {
        let parsed = try KeyFile.parseDER(der, allowTrailing: false)
        guard case .privateKey(let key) = parsed.material else { throw .notAPrivateKey }
        self = key
    }

    /// Reads the key out of a raw DCT slot (612 bytes at 34 for TCP, 192 at 3106 for UDP, or any
    /// prefix-aligned dump): the DER header gives the length, whatever follows is ignored, as in
    /// Device OS `determine_der_length()` (device-os-keys.md §1.3).
    public init(slot: [UInt8]) throws(DeviceKeyError) {
        guard let first = slot.first else { throw .empty }
        guard first != 0xFF else { throw .blankSlot(slotSize: slot.count) }
        guard first == DER.sequence, let header = DER.header(slot) else {
            throw .corruptSlot(slotSize: slot.count, reason: "it does not start with a DER SEQUENCE")
        }
        let encoding = DER.classify(slot)
        guard header.totalLength <= slot.count else {
            if encoding == .pkcs8 { throw .truncatedPKCS8InSlot(keyLength: header.totalLength, slotSize: slot.count) }
            throw .corruptSlot(slotSize: slot.count, reason: "its DER header claims \(header.totalLength) bytes, more than the slot holds")
        }
        var der = Array(slot.prefix(header.totalLength))
        defer { SecretBytes.clear(&der) }
        do {
            let parsed = try KeyFile.parseDER(der, allowTrailing: false)
            guard case .privateKey(let key) = parsed.material else {
                throw DeviceKeyError.corruptSlot(slotSize: slot.count, reason: "it holds a public key, not a private key")
            }
            self = key
        } catch let error as DeviceKeyError {
            switch error {
            case .corruptSlot, .unsupportedAlgorithm, .unsupportedCurve: throw error
            case .inconsistentKeyPair: throw .corruptSlot(slotSize: slot.count, reason: "its private and public parts do not match (damaged key bytes)")
            default: throw .corruptSlot(slotSize: slot.count, reason: "the key does not decode (\(error))")
            }
        } catch {
            throw .corruptSlot(slotSize: slot.count, reason: "\(error)")
        }
    }

    init(_ key: OpenSSLKey) throws(DeviceKeyError) {
        let publicKey = try DevicePublicKey(key)
        // Sizes and arithmetic before OpenSSL's pairwise check, whose primality tests a crafted
        // key can make cost minutes (RSAKeyBounds).
        var primalityChecked = true
        if publicKey.algorithm == .rsa {
            switch RSAKeyBounds.check(key) {
            case .consistent: primalityChecked = publicKey.bits <= RSAKeyBounds.primalityCheckedModulusBits
            case .tooLarge(let bits): throw .keyTooLarge(bits: bits, limit: RSAKeyBounds.largestModulusBits)
            case .multiPrime: throw .unsupportedAlgorithm("multi-prime RSA (more than two primes)")
            case .inconsistent: throw .inconsistentKeyPair(algorithm: .rsa)
            }
        }
        if primalityChecked, !key.isPairwiseConsistent { throw .inconsistentKeyPair(algorithm: publicKey.algorithm) }
        guard var der = key.typeSpecificPrivateDER() else {
            throw .malformedDER(encoding: publicKey.algorithm == .rsa ? .pkcs1 : .sec1, reason: OpenSSLKey.lastError())
        }
        self.algorithm = publicKey.algorithm
        self.secret = SecretBytes(clearing: &der)
        self.publicKey = publicKey
    }

    /// The DER followed by 0xFF to `size` bytes, as Device OS's own setter leaves a slot (no tail of
    /// an older key remains). Made at its final size, so no partial copy is left behind by growth;
    /// the caller clears it after the write.
    public func slotImage(size: Int) -> [UInt8] {
        var image = [UInt8](repeating: 0xFF, count: max(size, secret.count))
        withDER { der in image.withUnsafeMutableBytes { $0.copyMemory(from: der) } }
        return image
    }

    /// `BEGIN RSA PRIVATE KEY` / `BEGIN EC PRIVATE KEY` PEM of `der` (the `<name>.pem` file).
    public func pem() throws(DeviceKeyError) -> String {
        let encoding: KeyEncoding = algorithm == .rsa ? .pkcs1 : .sec1
        guard let key = withDER({ OpenSSLKey.decodePrivate($0, as: encoding) }), let pem = key.traditionalPrivatePEM() else {
            throw .malformedDER(encoding: encoding, reason: OpenSSLKey.lastError())
        }
        return pem
    }

    public var description: String {
        "\(algorithm.displayName) private key (public \(publicKey.fingerprint))"
    }
    public var debugDescription: String { description }
    public var customMirror: Mirror {
        Mirror(self, children: ["algorithm": algorithm, "publicKey": publicKey], displayStyle: .struct)
    }
}

extension KeyAlgorithm {
    /// Maps OpenSSL's key type, refusing what no Particle device uses.
    init(checking key: OpenSSLKey) throws(DeviceKeyError) {
        switch key.baseID {
        case EVP_PKEY_RSA_ID:
            self = .rsa
        case EVP_PKEY_EC_ID:
            let curve = key.groupName ?? "unknown"
            guard curve == "prime256v1" else { throw .unsupportedCurve(curve) }
            self = .ec
        case EVP_PKEY_RSA_PSS_ID:
            // A PSS-restricted key cannot be written as PKCS#1 for the device's handshake.
            throw .unsupportedAlgorithm("RSA-PSS (restricted to PSS signatures)")
        default:
            throw .unsupportedAlgorithm(key.typeName)
        }
    }
}
