import Age
import LocalFiles

/// `keyline escrow show|verify`: a backup file an operator names, checked. Errors about the file's
/// contents name it (`FileContentError`).
public enum BackupFileCheck {
    /// An escrow backup is one age header (about 100 bytes a recipient) and a document of at
    /// most `EscrowBackup.maximumDocumentSize`.
    public static let fileLimit = 64 * 1024

    /// Decrypts the backup at `path` with the identities in `identityFiles` and checks it
    /// completely: the age file authenticates, the document is valid, the key has the recorded
    /// fingerprint. Blocking (files, decryption): async callers run it with `offPool`.
    public static func open(_ path: String, identityFiles: [String]) throws -> OpenedBackupFile {
        let identities = try EscrowKeyFiles.identities(identityFiles)
        let file = try read(path)
        let backup = try decrypt(file, at: path, identities: identities)
        return OpenedBackupFile(path: path, sha256: Age.sha256(file), backup: backup)
    }

    /// Compares the file's SHA-256 with `expectedSHA256` (the registry's) and parses its age
    /// header, without any identity: what an audit needs to detect loss or tampering. With
    /// `identityFiles`, also decrypts and checks the backup as `open` does. Blocking, as `open`.
    public static func verify(_ path: String, expectedSHA256: String, identityFiles: [String]) throws -> VerifiedBackupFile {
        let file = try read(path)
        let actual = Age.sha256(file)
        let expected = expectedSHA256.lowercased()
        guard actual == expected else {
            throw EscrowRequestError.checksumMismatch(file: path, expected: expected, actual: actual)
        }
        let header: AgeHeader
        do { header = try Age.header(of: file) } catch { throw FileContentError(path: path, error: error) }
        var backup: EscrowBackup?
        if !identityFiles.isEmpty {
            let identities = try EscrowKeyFiles.identities(identityFiles)
            backup = try decrypt(file, at: path, identities: identities)
        }
        return VerifiedBackupFile(path: path, sha256: actual, recipientTypes: header.stanzas.map(\.type), backup: backup)
    }

    private static func read(_ path: String) throws -> [UInt8] {
        try InputFile.read(path, limit: fileLimit, what: "an escrow backup")
    }

    private static func decrypt(_ file: [UInt8], at path: String, identities: [X25519Identity]) throws -> EscrowBackup {
        do { return try EscrowBackup.decrypt(file, identities: identities) } catch { throw FileContentError(path: path, error: error) }
    }
}

/// A backup file that decrypted to a valid backup.
public struct OpenedBackupFile: Sendable {
    public let path: String
    /// Lowercase hex SHA-256 of the file, as the registry records it.
    public let sha256: String
    /// The decrypted backup: it holds the key.
    public let backup: EscrowBackup
}

/// A backup file with the recorded SHA-256 and a readable age header.
public struct VerifiedBackupFile: Sendable {
    public let path: String
    public let sha256: String
    /// The types of the age header's recipient stanzas.
    public let recipientTypes: [String]
    /// The decrypted, valid backup when identities were given.
    public let backup: EscrowBackup?
}
