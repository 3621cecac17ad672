import Age
import DeviceKeys
import LocalFiles
import ParticlePlatform

/// `keyline escrow backup`: one device key, read from a file an operator names, checked against
/// its platform's key slot, and sealed as a backup to the recipients; then put into a store, or
/// handed back for the caller to write to a file.
public struct KeyBackupRequest: Sendable {
    /// The device's private key file (PEM or DER).
    public var keyFile: String
    /// As typed: any case.
    public var deviceID: String
    public var platform: String
    public var product: String
    public var job: String
    public var station: String
    /// age1… recipients given as text, and files of them.
    public var recipients: [String]
    public var recipientFiles: [String]

    public init(keyFile: String, deviceID: String, platform: String, product: String, job: String, station: String,
                recipients: [String], recipientFiles: [String]) {
        self.keyFile = keyFile
        self.deviceID = deviceID
        self.platform = platform
        self.product = product
        self.job = job
        self.station = station
        self.recipients = recipients
        self.recipientFiles = recipientFiles
    }

    /// The backup, encrypted. Checked in the order an operator fixes things: platform and device
    /// ID, then the key file, then the recipients. Errors about the key file name it (`FileContentError`).
    /// Blocking (files, encryption): async callers use `escrow(into:)` or run it with `offPool`.
    public func seal() throws -> KeyBackup {
        let target = try Platform.named(platform)
        let id = deviceID.lowercased()
        guard target.isValidDeviceID(id) else {
            throw EscrowRequestError.invalidDeviceID(deviceID, platform: target.name, prefix: target.deviceIDPrefix)
        }
        let privateKey = try readKey(for: target)
        let parsedRecipients = try EscrowKeyFiles.recipients(recipients, files: recipientFiles)
        let backup = try EscrowBackup(deviceID: id, platform: target.name, product: product, privateKey: privateKey,
                                      job: job, station: station)
        return KeyBackup(document: backup, sealed: try backup.seal(to: parsedRecipients), recipients: parsedRecipients)
    }

    /// Seals the backup, then opens the store (`openStore`: only once the backup is sealed, so a
    /// bad key is reported before a store that cannot be reached) and puts it there write-once.
    public func escrow(into openStore: @escaping @Sendable () throws -> any EscrowStore) async throws -> EscrowedKeyBackup {
        let request = self
        let backup = try await offPool { try request.seal() }
        let store = try await offPool { try openStore() }
        let digest = try await store.put(backup.sealed.ciphertext, at: backup.sealed.objectKey)
        return EscrowedKeyBackup(backup: backup, store: store, sha256: digest)
    }

    private func readKey(for target: Platform) throws -> DevicePrivateKey {
        do {
            let parsed = try KeyFile.parse(try InputFile.read(keyFile, limit: KeyFile.maximumFileSize, what: "a key file"))
            guard let privateKey = parsed.privateKey else { throw DeviceKeyError.notAPrivateKey }
            try target.checkDeviceKey(privateKey)
            return privateKey
        } catch {
            throw FileContentError(path: keyFile, error: error)
        }
    }
}

/// A device key's backup, sealed: the document (it holds the key: keep it in memory only), its
/// ciphertext and object key, and the recipients it was encrypted to.
public struct KeyBackup: Sendable {
    public let document: EscrowBackup
    public let sealed: SealedBackup
    public let recipients: [X25519Recipient]
}

/// A backup written to a store, and the SHA-256 the store computed for the registry.
public struct EscrowedKeyBackup: Sendable {
    public let backup: KeyBackup
    public let store: any EscrowStore
    public let sha256: String
}
