import Crypto
import Foundation

/// age v1 file encryption (https://age-encryption.org/v1): a random 16-byte file key wrapped
/// to each recipient in the header, a header MAC keyed from the file key, and the payload in
/// STREAM chunks keyed by HKDF from the file key and a random nonce. Mirrors `age.go`
/// (top-level Encrypt/Decrypt) in FiloSottile/age. Backups are small, so files are handled
/// whole in memory; decryption still releases plaintext chunk by chunk as each authenticates.
public enum Age {
    static let fileKeySize = 16
    static let payloadNonceSize = 16

    /// Encrypts `plaintext` to every recipient (any one of their identities decrypts).
    /// With `armor`, the result is ASCII-armored text; otherwise the binary format.
    public static func encrypt(_ plaintext: [UInt8], to recipients: [any AgeRecipient], armor: Bool = false) throws -> [UInt8] {
        guard !recipients.isEmpty else { throw AgeError.noRecipients }
        var fileKey = [UInt8](repeating: 0, count: fileKeySize)
        fillRandom(&fileKey)
        var stanzas: [AgeStanza] = []
        for recipient in recipients { stanzas += try recipient.wrap(fileKey: fileKey) }

        let headerWithoutMAC = AgeHeader.encodeWithoutMAC(stanzas)
        let mac = HMAC<SHA256>.authenticationCode(for: headerWithoutMAC, using: headerMACKey(fileKey: fileKey))
        var out = AgeHeader.encode(withoutMAC: headerWithoutMAC, mac: Array(mac))
        var nonce = [UInt8](repeating: 0, count: payloadNonceSize)
        fillRandom(&nonce)
        out += nonce
        try AgeStream.seal(plaintext, key: payloadKey(fileKey: fileKey, nonce: nonce), into: &out)
        return armor ? AgeArmor.encode(out) : out
    }

    /// Decrypts a binary or armored age file with the first identity that unwraps a stanza.
    public static func decrypt(_ file: [UInt8], identities: [any AgeIdentity]) throws -> [UInt8] {
        var plaintext: [UInt8] = []
        try decrypt(file, identities: identities) { plaintext += $0 }
        return plaintext
    }

    /// Decrypts a binary or armored age file, handing plaintext to `emit` chunk by chunk as each
    /// chunk authenticates. On a payload error, what was emitted before it is authentic but the
    /// file as a whole is not: callers must discard or flag it.
    public static func decrypt(_ file: [UInt8], identities: [any AgeIdentity], emit: (Data) throws -> Void) throws {
        guard !identities.isEmpty else { throw AgeError.noIdentities }
        let binary = AgeArmor.isArmored(file) ? try AgeArmor.decode(file) : file
        let header = try AgeHeader.parse(binary)
        guard let fileKey = try unwrapFileKey(header, identities: identities) else {
            throw AgeError.noIdentityMatched(stanzaTypes: header.stanzas.map(\.type))
        }
        guard HMAC<SHA256>.isValidAuthenticationCode(header.mac, authenticating: header.macInput, using: headerMACKey(fileKey: fileKey)) else {
            throw AgeError.headerMACMismatch
        }
        guard binary.count - header.payloadOffset >= payloadNonceSize else { throw AgeError.truncated(.payloadNonce) }
        let nonce = Array(binary[header.payloadOffset..<(header.payloadOffset + payloadNonceSize)])
        try AgeStream.open(binary[(header.payloadOffset + payloadNonceSize)...], key: payloadKey(fileKey: fileKey, nonce: nonce), emit: emit)
    }

    /// Parses only the header (binary or armored): recipient types and layout, no key needed.
    public static func header(of file: [UInt8]) throws -> AgeHeader {
        try AgeHeader.parse(AgeArmor.isArmored(file) ? try AgeArmor.decode(file) : file)
    }

    static func unwrapFileKey(_ header: AgeHeader, identities: [any AgeIdentity]) throws -> [UInt8]? {
        for identity in identities {
            for stanza in header.stanzas {
                guard let fileKey = try identity.unwrap(stanza) else { continue }
                return fileKey
            }
        }
        return nil
    }

    static func headerMACKey(fileKey: [UInt8]) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(inputKeyMaterial: SymmetricKey(data: fileKey), info: Array("header".utf8), outputByteCount: 32)
    }

    static func payloadKey(fileKey: [UInt8], nonce: [UInt8]) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(inputKeyMaterial: SymmetricKey(data: fileKey), salt: nonce, info: Array("payload".utf8), outputByteCount: 32)
    }

    static func fillRandom(_ bytes: inout [UInt8]) {
        // SymmetricKey draws from the system CSPRNG (BoringSSL's RAND_bytes on Linux).
        let random = SymmetricKey(size: SymmetricKeySize(bitCount: bytes.count * 8))
        random.withUnsafeBytes { bytes = Array($0) }
    }
}
