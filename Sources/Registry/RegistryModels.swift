import Foundation

/// Key algorithms as stored in `key_registrations.algorithm` (DeviceKeys' `KeyAlgorithm` raw values).
public enum RegisteredKeyAlgorithm: String, Sendable, CaseIterable, Codable {
    case rsa, ec
}

public enum RegistrationStatus: String, Sendable, CaseIterable, Codable {
    case active, superseded, revoked
}

public enum JobStatus: String, Sendable, CaseIterable, Codable {
    case running, completed, failed, cancelled
}

public enum RestorationOutcome: String, Sendable, CaseIterable, Codable {
    case restored, failed
}

public struct Product: Sendable, Hashable, Codable {
    public let id: String
    public let name: String
    public let platform: String?
    public let createdAt: Date
}

public struct Job: Sendable, Hashable, Codable {
    public let id: Int64
    public let productID: String
    public let station: String
    public let pipeline: String
    public let status: JobStatus
    public let startedAt: Date
    public let finishedAt: Date?
}

/// A device's workflow state in one job. States are the raw values of Provisioning's
/// `DeviceWorkflowState` (Registry sits below Provisioning, so it names them as strings); the database
/// refuses any move that is not one step forward, to `failed`, or from `failed` back.
public struct JobDevice: Sendable, Hashable, Codable {
    public let jobID: Int64
    public let deviceID: String
    public let state: String
    /// While `failed`: the state it failed from, where a resume continues.
    public let lastGoodState: String?
    public let attempts: Int
    public let lastError: String?
    public let portPath: String?
    public let platform: String?
    /// SHA-256 (hex) of the SPKI DER of the key the device holds, recorded at `key_ready`.
    public let keyFingerprint: String?
    public let station: String
    public let createdAt: Date
    public let updatedAt: Date
    /// Set when an operator abandoned the device in this job (`keyline job abandon`): it keeps its
    /// state, moves no further, and no resume or later job waits for it.
    public var abandonedAt: Date? = nil
    public var abandonReason: String? = nil

    /// Neither done nor abandoned: the job is not complete while such a device remains.
    public var isUnfinished: Bool { state != "done" && abandonedAt == nil }
}

/// What a station knows about an escrow object it has just written durably.
public struct NewEscrowObject: Sendable, Hashable {
    public var productID: String
    public var deviceID: String
    /// SHA-256 (lowercase hex) of the escrowed key's SubjectPublicKeyInfo DER.
    public var publicKeySHA256: String
    /// Where the store lives (`file:///var/lib/keyline/escrow`, `s3://bucket/prefix` …).
    public var storeURI: String
    /// `<product>/<device-id>/<spki-sha256>.age` (design.md, "Escrow format").
    public var objectKey: String
    /// SHA-256 (lowercase hex) of the age file as written.
    public var ciphertextSHA256: String
    public var sizeBytes: Int64
    /// age recipients (`age1…`) the object is encrypted to.
    public var recipients: [String]
    public var jobID: Int64?
    public var station: String

    public init(productID: String, deviceID: String, publicKeySHA256: String, storeURI: String, objectKey: String,
                ciphertextSHA256: String, sizeBytes: Int64, recipients: [String], jobID: Int64?, station: String) {
        self.productID = productID
        self.deviceID = deviceID
        self.publicKeySHA256 = publicKeySHA256
        self.storeURI = storeURI
        self.objectKey = objectKey
        self.ciphertextSHA256 = ciphertextSHA256
        self.sizeBytes = sizeBytes
        self.recipients = recipients
        self.jobID = jobID
        self.station = station
    }
}

public struct EscrowObject: Sendable, Hashable, Codable {
    public let id: Int64
    public let productID: String
    public let deviceID: String
    public let publicKeySHA256: String
    public let storeURI: String
    public let objectKey: String
    public let ciphertextSHA256: String
    public let sizeBytes: Int64
    public let recipients: [String]
    public let jobID: Int64?
    public let station: String
    public let createdAt: Date
}

/// An escrow object about to be written, recorded before the write (write-ahead escrow): after a
/// crash the store adopts an object at `objectKey` whose bytes hash to `ciphertextSHA256`.
public struct EscrowIntent: Sendable, Hashable, Codable {
    public let id: Int64
    public let jobID: Int64
    public let deviceID: String
    public let productID: String
    public let publicKeySHA256: String
    public let storeURI: String
    public let objectKey: String
    public let ciphertextSHA256: String
    public let sizeBytes: Int64
    public let recipients: [String]
    public let station: String
    public let createdAt: Date
    /// The escrow object the intent was committed as; nil while pending.
    public let committedEscrowObjectID: Int64?
    public let updatedAt: Date

    public var isCommitted: Bool { committedEscrowObjectID != nil }
}

/// A public key to register after its escrow object committed.
public struct NewKeyRegistration: Sendable, Hashable {
    public var productID: String
    public var deviceID: String
    public var algorithm: RegisteredKeyAlgorithm
    /// SubjectPublicKeyInfo DER of the key read back from the device.
    public var spkiDER: [UInt8]
    /// SHA-256 of `spkiDER`, lowercase hex; the database checks it.
    public var fingerprint: String
    public var escrowObjectID: Int64
    /// The job whose device moves to `registered` in the same transaction; nil for RMA re-keys.
    public var jobID: Int64?
    public var station: String
    /// Whether the Particle cloud must learn this key: an upload is queued in the same transaction
    /// (schema/0009_cloud_outbox.sql; the pipeline's `cloud.upload` decides for the line).
    public var queueCloudUpload = false

    public init(productID: String, deviceID: String, algorithm: RegisteredKeyAlgorithm, spkiDER: [UInt8],
                fingerprint: String, escrowObjectID: Int64, jobID: Int64?, station: String) {
        self.productID = productID
        self.deviceID = deviceID
        self.algorithm = algorithm
        self.spkiDER = spkiDER
        self.fingerprint = fingerprint
        self.escrowObjectID = escrowObjectID
        self.jobID = jobID
        self.station = station
    }
}

public struct KeyRegistration: Sendable, Hashable, Codable {
    public let id: Int64
    public let productID: String
    public let deviceID: String
    public let algorithm: RegisteredKeyAlgorithm
    public let spkiDER: [UInt8]
    public let fingerprint: String
    public let escrowObjectID: Int64
    public let jobID: Int64?
    public let station: String
    public let registeredAt: Date
    public let status: RegistrationStatus
    public let statusChangedAt: Date?
    public let statusReason: String?
}

/// A registration with the escrow object that backs it (what an audit walks through).
public struct AuditedRegistration: Sendable, Hashable, Codable {
    public let registration: KeyRegistration
    public let escrowObject: EscrowObject
}

public struct Restoration: Sendable, Hashable, Codable {
    public let id: Int64
    public let registrationID: Int64
    public let productID: String
    public let deviceID: String
    public let escrowObjectID: Int64
    public let station: String
    public let `operator`: String
    public let outcome: RestorationOutcome
    public let detail: String?
    public let restoredAt: Date
    /// Why the device came back (RMA reason) and the ticket it came with.
    public var reason: String? = nil
    public var ticket: String? = nil
    public var durationMilliseconds: Int64? = nil
    /// What the key slot held before the restore: original, blank, corrupt or other.
    public var foundKey: String? = nil
    /// For `other`: the escrow object the found key was saved to before it was overwritten.
    public var supersededEscrowObjectID: Int64? = nil
}

/// A restore attempt to record (`recordRestoration(_:)`).
public struct NewRestoration: Sendable, Hashable {
    public var registrationID: Int64
    public var station: String
    public var outcome: RestorationOutcome
    public var detail: String?
    public var reason: String?
    public var ticket: String?
    public var durationMilliseconds: Int64?
    public var foundKey: String?
    public var supersededEscrowObjectID: Int64?

    public init(registrationID: Int64, station: String, outcome: RestorationOutcome, detail: String? = nil,
                reason: String? = nil, ticket: String? = nil, durationMilliseconds: Int64? = nil,
                foundKey: String? = nil, supersededEscrowObjectID: Int64? = nil) {
        self.registrationID = registrationID
        self.station = station
        self.outcome = outcome
        self.detail = detail
        self.reason = reason
        self.ticket = ticket
        self.durationMilliseconds = durationMilliseconds
        self.foundKey = foundKey
        self.supersededEscrowObjectID = supersededEscrowObjectID
    }
}

/// One entry of the append-only audit trail.
public struct AuditEvent: Sendable, Hashable, Codable {
    public let id: Int64
    public let occurredAt: Date
    /// The database login that wrote it.
    public let actor: String
    public let station: String?
    /// What happened, dotted lowercase (`key.registered`, `device.failed`, `key.restored` …).
    public let kind: String
    public let productID: String?
    public let deviceID: String?
    public let jobID: Int64?
    /// Small string facts about the event, stored as a JSON object. Never key material.
    public let detail: [String: String]
}
