import Crypto
import Foundation

/// Something age can encrypt a file key to, producing header stanzas.
public protocol AgeRecipient: Sendable {
    func wrap(fileKey: [UInt8]) throws -> [AgeStanza]
}

/// Something that can recover a file key from a stanza.
public protocol AgeIdentity: Sendable {
    /// The 16-byte file key if `stanza` is of this identity's type and was wrapped for it; nil
    /// if it is some other type or recipient (age then tries the next stanza or identity).
    /// Throws when a stanza of this identity's own type is malformed: that fails the file.
    func unwrap(_ stanza: AgeStanza) throws -> [UInt8]?
}

/// The X25519 recipient type (age-encryption.org/v1, "The X25519 recipient type"): an
/// ephemeral Curve25519 share, HKDF-SHA-256 over the shared secret with salt
/// `share || recipient` and info `age-encryption.org/v1/X25519`, then ChaCha20-Poly1305 with a
/// zero nonce wraps the file key. Mirrors `x25519.go` in FiloSottile/age.
enum AgeX25519 {
    static let stanzaType = "X25519"
    static let wrapInfo = Array("age-encryption.org/v1/X25519".utf8)
    static let zeroNonce = try! ChaChaPoly.Nonce(data: [UInt8](repeating: 0, count: 12))

    static func wrappingKey(sharedSecret: SharedSecret, share: [UInt8], recipient: [UInt8]) -> SymmetricKey {
        sharedSecret.hkdfDerivedSymmetricKey(using: SHA256.self, salt: share + recipient, sharedInfo: wrapInfo, outputByteCount: 32)
    }
}

/// An X25519 public key, written `age1…` (Bech32, HRP "age").
public struct X25519Recipient: AgeRecipient, Hashable, CustomStringConvertible {
    public let publicKeyBytes: [UInt8]

    public init(publicKey: Curve25519.KeyAgreement.PublicKey) {
        publicKeyBytes = Array(publicKey.rawRepresentation)
    }

    public init(_ text: String) throws(AgeError) {
        try self.init(text, line: nil)
    }

    /// `line` (1-based) names the line of a recipients file in errors.
    init(_ text: String, line: Int?) throws(AgeError) {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        // An identity file passed with -R, or a secret key with -r, is an easy mistake; its text
        // must never be echoed back (errors reach terminals, logs and --json output). age does the same.
        guard !Self.holdsSecretKey(trimmed) else { throw .identityAsRecipient(line: line) }
        let decoded: (hrp: String, data: [UInt8])
        do { decoded = try Bech32.decode(trimmed) } catch {
            throw .invalidRecipient(Self.excerpt(trimmed), reason: "not valid Bech32 (\(error))")
        }
        guard decoded.hrp == "age" else {
            throw .invalidRecipient(Self.excerpt(trimmed), reason: "prefix is \"\(Self.excerpt(decoded.hrp))\", not \"age\" (recipients are lowercase)")
        }
        guard decoded.data.count == 32 else {
            throw .invalidRecipient(Self.excerpt(trimmed), reason: "holds \(decoded.data.count) bytes, an X25519 key is 32")
        }
        publicKeyBytes = decoded.data
    }

    /// Whether `text` holds an age secret key (`AGE-SECRET-KEY-`, in any case, anywhere).
    static func holdsSecretKey(_ text: String) -> Bool {
        text.range(of: "AGE-SECRET-KEY-", options: [.caseInsensitive]) != nil
    }

    /// At most the first 12 characters of recipient text, for error messages: enough to recognise
    /// it, too little to carry a key should something secret be passed by mistake.
    static func excerpt(_ text: String) -> String {
        text.count <= 12 ? text : String(text.prefix(12)) + "…"
    }

    /// Reads a recipients file as `age -R` does: one recipient per line, `#` comments and
    /// blank lines ignored.
    public static func parseFile(_ text: String) throws(AgeError) -> [X25519Recipient] {
        var recipients: [X25519Recipient] = []
        for (index, line) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            recipients.append(try X25519Recipient(trimmed, line: index + 1))
        }
        guard !recipients.isEmpty else { throw .noRecipients }
        return recipients
    }

    public var description: String { Bech32.encode(hrp: "age", data: publicKeyBytes) }

    public func wrap(fileKey: [UInt8]) throws -> [AgeStanza] {
        let recipientKey = try Curve25519.KeyAgreement.PublicKey(rawRepresentation: publicKeyBytes)
        let ephemeral = Curve25519.KeyAgreement.PrivateKey()
        let share = Array(ephemeral.publicKey.rawRepresentation)
        let secret = try ephemeral.sharedSecretFromKeyAgreement(with: recipientKey)
        // A low-order "recipient" gives an all-zero secret anyone can compute: refuse to use it.
        guard !secret.withUnsafeBytes({ $0.allSatisfy { $0 == 0 } }) else {
            throw AgeError.invalidRecipient(Self.excerpt(description), reason: "it is a low-order point, not a usable public key")
        }
        let key = AgeX25519.wrappingKey(sharedSecret: secret, share: share, recipient: publicKeyBytes)
        let box = try ChaChaPoly.seal(fileKey, using: key, nonce: AgeX25519.zeroNonce)
        return [AgeStanza(type: AgeX25519.stanzaType, arguments: [StrictBase64.encodeString(share, padded: false)],
                          body: Array(box.ciphertext) + Array(box.tag))]
    }
}

/// An X25519 private key, written `AGE-SECRET-KEY-1…`. Its `description` shows only the
/// recipient; the secret text comes out only through `secretKeyString`.
public struct X25519Identity: AgeIdentity, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    let privateKey: Curve25519.KeyAgreement.PrivateKey

    public static func generate() -> X25519Identity {
        X25519Identity(privateKey: Curve25519.KeyAgreement.PrivateKey())
    }

    init(privateKey: Curve25519.KeyAgreement.PrivateKey) {
        self.privateKey = privateKey
    }

    public init(_ text: String) throws(AgeError) {
        try self.init(text, line: nil)
    }

    init(_ text: String, line: Int?) throws(AgeError) {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let decoded: (hrp: String, data: [UInt8])
        do { decoded = try Bech32.decode(trimmed) } catch {
            throw .invalidIdentity(line: line, reason: "not valid Bech32 (\(error))")
        }
        guard decoded.hrp == "AGE-SECRET-KEY-" else {
            throw .invalidIdentity(line: line, reason: "not an X25519 identity (prefix is not AGE-SECRET-KEY-, in uppercase)")
        }
        guard decoded.data.count == 32, let key = try? Curve25519.KeyAgreement.PrivateKey(rawRepresentation: decoded.data) else {
            throw .invalidIdentity(line: line, reason: "an X25519 identity holds 32 bytes")
        }
        privateKey = key
    }

    /// Reads an identity file as `age -i` does (the format `age-keygen` writes): one identity per
    /// line, `#` comments and blank lines ignored.
    public static func parseFile(_ text: String) throws(AgeError) -> [X25519Identity] {
        var identities: [X25519Identity] = []
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            identities.append(try X25519Identity(trimmed, line: index + 1))
        }
        guard !identities.isEmpty else { throw .noIdentities }
        return identities
    }

    public var recipient: X25519Recipient { X25519Recipient(publicKey: privateKey.publicKey) }

    /// The identity as `AGE-SECRET-KEY-1…`. Secret: write it only to a 0600 file.
    public func secretKeyString() -> String {
        Bech32.encode(hrp: "AGE-SECRET-KEY-", data: Array(privateKey.rawRepresentation)).uppercased()
    }

    /// The identity file `age-keygen` writes.
    public func identityFile(created: Date = Date()) -> String {
        let stamp = created.formatted(Date.ISO8601FormatStyle())
        return "# created: \(stamp)\n# public key: \(recipient)\n\(secretKeyString())\n"
    }

    public var description: String { "X25519Identity(recipient: \(recipient))" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["recipient": recipient.description]) }

    public func unwrap(_ stanza: AgeStanza) throws -> [UInt8]? {
        guard stanza.type == AgeX25519.stanzaType else { return nil }
        guard stanza.arguments.count == 1 else {
            throw AgeError.malformedStanza(type: stanza.type, reason: "expected exactly one argument, found \(stanza.arguments.count)")
        }
        guard let share = StrictBase64.decode(Array(stanza.arguments[0].utf8), padded: false), share.count == 32 else {
            throw AgeError.malformedStanza(type: stanza.type, reason: "the ephemeral share is not 32 bytes of canonical base64")
        }
        guard stanza.body.count == 32 else {
            throw AgeError.malformedStanza(type: stanza.type, reason: "the wrapped file key is \(stanza.body.count) bytes, expected 32")
        }
        let shareKey = try Curve25519.KeyAgreement.PublicKey(rawRepresentation: share)
        let secret = try privateKey.sharedSecretFromKeyAgreement(with: shareKey)
        // A low-order share makes the shared secret all zeros; the spec requires rejecting it.
        let allZero = secret.withUnsafeBytes { $0.allSatisfy { $0 == 0 } }
        if allZero {
            throw AgeError.malformedStanza(type: stanza.type, reason: "the ephemeral share is a low-order point")
        }
        let key = AgeX25519.wrappingKey(sharedSecret: secret, share: share, recipient: recipient.publicKeyBytes)
        let box = try ChaChaPoly.SealedBox(nonce: AgeX25519.zeroNonce, ciphertext: stanza.body.prefix(16), tag: stanza.body.suffix(16))
        guard let fileKey = try? ChaChaPoly.open(box, using: key) else { return nil }
        return Array(fileKey)
    }
}
