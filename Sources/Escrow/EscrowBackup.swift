import DeviceKeys
import FailurePolicy
import Foundation
import ParticlePlatform
import Age

/// The plaintext inside an escrow backup: a versioned JSON document naming the device and the
/// key (design.md, "Escrow format"). Field names are stable; version 1 has exactly these keys:
///
///     {"format":"keyline-escrow-backup","version":1,"device_id":"<24 hex>","platform":"boron",
///      "product":"<product>","algorithm":"rsa"|"ec","private_key_der":"<base64>",
///      "public_key_sha256":"<64 hex>","job":"…","station":"…","created_at":"2026-11-21T10:30:00Z"}
///
/// `private_key_der` is the device format (PKCS#1 for RSA, SEC1 for EC) and
/// `public_key_sha256` the SHA-256 of its public key's SPKI DER. Decoding checks every field and
/// that the key's public key has the recorded fingerprint. `description` never shows the key.
public struct EscrowBackup: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public static let format = "keyline-escrow-backup"
    public static let version = 1

    public let deviceID: String
    public let platform: String
    public let product: String
    public let privateKey: DevicePrivateKey
    public let job: String
    public let station: String
    /// Whole seconds, UTC (the document stores RFC 3339 without fractions).
    public let createdAt: Date

    public var algorithm: KeyAlgorithm { privateKey.algorithm }
    /// Lowercase hex SHA-256 of the public key's SPKI DER, as the registry records it.
    public var publicKeySHA256: String { privateKey.publicKey.fingerprint }

    /// Validates every field; `deviceID` may be given in either case and is stored lowercase.
    /// The one validation of a backup: `decode` ends here too, so a document `escrow show` accepts
    /// is one `escrow backup` could have written — a platform in the platform table, a device ID
    /// of that platform, a key that platform's slot holds.
    public init(deviceID: String, platform: String, product: String, privateKey: DevicePrivateKey,
                job: String, station: String, createdAt: Date = Date()) throws(EscrowBackupError) {
        self.deviceID = try Self.checkDeviceID(deviceID.lowercased())
        self.platform = try Self.checkPlatform(platform)
        let target = try Self.platformEntry(self.platform)
        guard target.isValidDeviceID(self.deviceID) else {
            throw .invalidField("device_id", reason: "not a \(target.name) device ID (it must start with \(target.deviceIDPrefix ?? "its MCU's prefix"))")
        }
        do { try target.checkDeviceKey(privateKey) } catch {
            throw .invalidField("private_key_der", reason: "not a key a \(target.name) device holds: \(error)")
        }
        self.product = try Self.checkProduct(product)
        self.job = try Self.checkLabel(job, field: "job")
        self.station = try Self.checkLabel(station, field: "station")
        self.privateKey = privateKey
        self.createdAt = Date(timeIntervalSince1970: createdAt.timeIntervalSince1970.rounded(.down))
    }

    /// Where the store keeps this backup: `<product>/<device-id>/<spki-sha256>.age`.
    public var objectKey: EscrowObjectKey {
        // Fields were validated at init, so the key is always valid.
        try! EscrowObjectKey(product: product, deviceID: deviceID, publicKeySHA256: publicKeySHA256)
    }

    public var description: String {
        "escrow backup of \(algorithm.displayName) key \(publicKeySHA256) for device \(deviceID) (product \(product))"
    }
    public var debugDescription: String { description }
    public var customMirror: Mirror {
        Mirror(self, children: ["deviceID": deviceID, "platform": platform, "product": product, "algorithm": algorithm,
                                "publicKeySHA256": publicKeySHA256, "job": job, "station": station, "createdAt": createdAt],
               displayStyle: .struct)
    }

    /// Everything but the key, for listings and `keyline escrow show`.
    public var metadata: [String: String] {
        ["format": Self.format, "version": String(Self.version), "device_id": deviceID, "platform": platform,
         "product": product, "algorithm": algorithm.rawValue, "public_key_sha256": publicKeySHA256,
         "job": job, "station": station, "created_at": Self.timestamp(createdAt)]
    }

    // MARK: - JSON

    /// The JSON document (UTF-8, keys sorted). Holds the private key: keep it in memory only, and
    /// clear it (`SecretBytes.clear`) once used, as `encrypt` does.
    public func encoded() -> [UInt8] {
        EscrowBackupDocument.encode(self)
    }

    static let fields: Set<String> = ["format", "version", "device_id", "platform", "product", "algorithm",
                                      "private_key_der", "public_key_sha256", "job", "station", "created_at"]

    /// The largest document `decode` reads: the fields of a version 1 backup with an RSA-1024 key
    /// take under 3 KB even with 200-character job and station labels.
    public static let maximumDocumentSize = 8 * 1024

    /// Parses and validates a decrypted document: size first, then JSON (no key twice), then each
    /// field, then everything `init` checks.
    public static func decode(_ json: [UInt8]) throws(EscrowBackupError) -> EscrowBackup {
        guard json.count <= maximumDocumentSize else {
            throw .malformedDocument("\(json.count) bytes, more than a backup document's \(maximumDocumentSize)")
        }
        guard let object = try? JSONSerialization.jsonObject(with: Data(json)), let document = object as? [String: Any] else {
            throw .malformedDocument("not a JSON object")
        }
        if let duplicate = StrictJSON.duplicateKey(in: json) {
            throw .malformedDocument("the field \"\(duplicate)\" appears more than once")
        }
        func string(_ field: String) throws(EscrowBackupError) -> String {
            guard let value = document[field] else { throw .missingField(field) }
            guard let text = value as? String else { throw .invalidField(field, reason: "must be a string") }
            return text
        }
        guard try string("format") == format else { throw .invalidField("format", reason: "must be \"\(format)\"") }
        guard let versionValue = document["version"] else { throw .missingField("version") }
        guard let number = versionValue as? NSNumber, !(versionValue is String),
              String(describing: number) == String(number.intValue) else {
            throw .invalidField("version", reason: "must be an integer")
        }
        guard number.intValue == version else { throw .unsupportedVersion(number.intValue) }
        if let unknown = Set(document.keys).subtracting(fields).sorted().first { throw .unknownField(unknown) }

        let algorithmName = try string("algorithm")
        guard let algorithm = KeyAlgorithm(rawValue: algorithmName) else {
            throw .invalidField("algorithm", reason: "must be \"rsa\" or \"ec\"")
        }
        let recordedFingerprint = try string("public_key_sha256")
        guard EscrowObjectKey.isSHA256Hex(recordedFingerprint) else {
            throw .invalidField("public_key_sha256", reason: "must be 64 lowercase hex digits")
        }
        guard var der = Data(base64Encoded: try string("private_key_der")), !der.isEmpty else {
            throw .invalidField("private_key_der", reason: "must be base64")
        }
        // The decoded key bytes and their array copy are cleared on every way out. (The base64
        // text inside Foundation's parsed JSON object is out of reach.)
        defer { der.withUnsafeMutableBytes { SecretBytes.clear($0) } }
        // Bounded before OpenSSL sees it: no device slot holds more.
        guard der.count <= KeyFile.largestSlotDump else {
            throw .invalidField("private_key_der", reason: "\(der.count) bytes, more than any device key slot holds")
        }
        var derBytes = Array(der)
        defer { SecretBytes.clear(&derBytes) }
        let key: DevicePrivateKey
        do { key = try DevicePrivateKey(der: derBytes) } catch {
            throw .invalidField("private_key_der", reason: "not a usable private key (\(error))")
        }
        guard key.secret.equals(derBytes) else {
            throw .invalidField("private_key_der", reason: "not in the device format (PKCS#1 for RSA, SEC1 for EC)")
        }
        guard key.algorithm == algorithm else { throw .algorithmMismatch(recorded: algorithm, actual: key.algorithm) }
        guard key.publicKey.fingerprint == recordedFingerprint else {
            throw .fingerprintMismatch(recorded: recordedFingerprint, actual: key.publicKey.fingerprint)
        }
        let created = try string("created_at")
        guard let createdAt = try? Date(created, strategy: Date.ISO8601FormatStyle()), timestamp(createdAt) == created else {
            throw .invalidField("created_at", reason: "must be an RFC 3339 UTC time like 2026-11-21T10:30:00Z")
        }
        let deviceID = try string("device_id")
        _ = try checkDeviceID(deviceID)
        return try EscrowBackup(deviceID: deviceID, platform: try string("platform"), product: try string("product"),
                                privateKey: key, job: try string("job"), station: try string("station"), createdAt: createdAt)
    }

    /// Restore trusts nothing in the file alone (design.md, "Escrow format"): throws unless the
    /// backup is for `deviceID` and holds the key whose SPKI SHA-256 is `publicKeySHA256`, the
    /// values of the device's active registration.
    public func check(deviceID: String, publicKeySHA256: String) throws(EscrowBackupError) {
        guard self.deviceID == deviceID.lowercased() else {
            throw .registrationMismatch(field: "device_id", registered: deviceID.lowercased(), backup: self.deviceID)
        }
        guard self.publicKeySHA256 == publicKeySHA256.lowercased() else {
            throw .registrationMismatch(field: "public_key_sha256", registered: publicKeySHA256.lowercased(), backup: self.publicKeySHA256)
        }
    }

    // MARK: - Encryption

    /// The backup as an age file (binary) for `recipients`.
    public func encrypt(to recipients: [any AgeRecipient]) throws -> [UInt8] {
        var plaintext = encoded()
        defer { SecretBytes.clear(&plaintext) }
        return try Age.encrypt(plaintext, to: recipients)
    }

    /// The backup encrypted for `recipients`, with everything a store and the registry need:
    /// where it goes, its ciphertext SHA-256 (recorded as the write-ahead intent before the put,
    /// so a redone run can adopt the object instead of colliding with it) and the key's fingerprint.
    /// The one way the runner and `keyline escrow backup` compose a backup.
    public func seal(to recipients: [X25519Recipient]) throws -> SealedBackup {
        let ciphertext = try encrypt(to: recipients)
        return SealedBackup(objectKey: objectKey, ciphertext: ciphertext, sha256: Age.sha256(ciphertext),
                            publicKeySHA256: publicKeySHA256)
    }

    /// Decrypts and validates a backup. age errors (`AgeError`) and document errors
    /// (`EscrowBackupError`) come out unchanged.
    public static func decrypt(_ file: [UInt8], identities: [any AgeIdentity]) throws -> EscrowBackup {
        var plaintext = try Age.decrypt(file, identities: identities)
        defer { SecretBytes.clear(&plaintext) }
        return try decode(plaintext)
    }

    // MARK: - Field rules

    static func timestamp(_ date: Date) -> String { date.formatted(Date.ISO8601FormatStyle()) }

    /// Particle device IDs are 12 bytes, written as 24 hex digits (lowercase here); the rule is
    /// the object key's, so every valid backup has a valid store key.
    static func checkDeviceID(_ id: String) throws(EscrowBackupError) -> String {
        guard EscrowObjectKey.isDeviceID(id) else {
            throw .invalidField("device_id", reason: "must be 24 lowercase hex digits")
        }
        return id
    }

    static func checkPlatform(_ name: String) throws(EscrowBackupError) -> String {
        guard (1...32).contains(name.utf8.count),
              name.utf8.allSatisfy({ (97...122).contains($0) || (48...57).contains($0) || $0 == 45 || $0 == 95 }) else {
            throw .invalidField("platform", reason: "must be a platform name like \"boron\" (lowercase letters, digits, - or _)")
        }
        return name
    }

    /// The platform table's row for a well-formed name.
    static func platformEntry(_ name: String) throws(EscrowBackupError) -> Platform {
        guard let platform = Platform.all.first(where: { $0.name == name }) else {
            throw .invalidField("platform", reason: "\"\(name)\" is not a platform keyline knows (\(Platform.all.map(\.name).joined(separator: ", ")))")
        }
        return platform
    }

    static func checkProduct(_ product: String) throws(EscrowBackupError) -> String {
        guard EscrowObjectKey.isPathSegment(product) else {
            throw .invalidField("product", reason: "must be 1-64 letters, digits, '.', '-' or '_', not starting with '.'")
        }
        return product
    }

    static func checkLabel(_ label: String, field: String) throws(EscrowBackupError) -> String {
        guard (1...200).contains(label.count), !label.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }),
              label.trimmingCharacters(in: .whitespaces) == label else {
            throw .invalidField(field, reason: "must be 1-200 characters without control characters or surrounding spaces")
        }
        return label
    }
}

/// An encrypted backup ready for a store. Holds ciphertext only (never the key), so it can be
/// kept, logged by its fields and retried freely.
public struct SealedBackup: Sendable, Hashable {
    /// `<product>/<device-id>/<spki-sha256>.age`.
    public let objectKey: EscrowObjectKey
    /// The age file (binary).
    public let ciphertext: [UInt8]
    /// Lowercase hex SHA-256 of `ciphertext`: what the registry records and `adopt` checks.
    public let sha256: String
    /// Lowercase hex SHA-256 of the key's SPKI DER.
    public let publicKeySHA256: String

    /// The same bytes at `key` (another generation of the same key).
    public func at(_ key: EscrowObjectKey) -> SealedBackup {
        SealedBackup(objectKey: key, ciphertext: ciphertext, sha256: sha256, publicKeySHA256: publicKeySHA256)
    }

    /// Internal: only `seal` makes one, so `sha256` always is the ciphertext's.
    init(objectKey: EscrowObjectKey, ciphertext: [UInt8], sha256: String, publicKeySHA256: String) {
        self.objectKey = objectKey
        self.ciphertext = ciphertext
        self.sha256 = sha256
        self.publicKeySHA256 = publicKeySHA256
    }
}

/// Why a decrypted backup document was refused. Never carries key material.
public enum EscrowBackupError: Error, Equatable, Sendable, CustomStringConvertible {
    case malformedDocument(String)
    case unsupportedVersion(Int)
    case missingField(String)
    case unknownField(String)
    case invalidField(String, reason: String)
    case algorithmMismatch(recorded: KeyAlgorithm, actual: KeyAlgorithm)
    case fingerprintMismatch(recorded: String, actual: String)
    /// The backup is intact but not for the registration it is being restored against.
    case registrationMismatch(field: String, registered: String, backup: String)

    public var description: String {
        switch self {
        case .malformedDocument(let reason):
            "the backup decrypted but its document is malformed (\(reason)); it was not written by keyline"
        case .unsupportedVersion(let version):
            "the backup document is version \(version); this keyline reads version \(EscrowBackup.version): upgrade keyline"
        case .missingField(let field):
            "the backup document has no \"\(field)\" field; it is incomplete"
        case .unknownField(let field):
            "the backup document has an unknown field \"\(field)\" for version \(EscrowBackup.version)"
        case .invalidField(let field, let reason):
            "the backup document's \"\(field)\" field is invalid: \(reason)"
        case .algorithmMismatch(let recorded, let actual):
            "the backup records a \(recorded.displayName) key but holds an \(actual.displayName) key; do not restore it"
        case .fingerprintMismatch(let recorded, let actual):
            "the backup's key has public key SHA-256 \(actual), not the recorded \(recorded); do not restore it"
        case .registrationMismatch(let field, let registered, let backup):
            "the backup's \(field) is \(backup) but the active registration has \(registered); this backup belongs to another device or key: do not restore it"
        }
    }
}

extension EscrowBackupError: ClassifiedError {
    /// A document or field that is wrong (including a backup restored against the wrong
    /// registration) is bad input: retrying the same data gives the same answer.
    public var failureClass: FailureClass { .badInput }
}
