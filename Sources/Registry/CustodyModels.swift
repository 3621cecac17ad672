import Foundation

/// An escrow epoch (schema 0012): the recipient backups are encrypted to while it is active. Its
/// identity exists only as Shamir shares held by custodians.
public struct EscrowEpoch: Sendable, Hashable, Codable {
    public enum Status: String, Sendable, Codable { case active, retired }
    public let id: Int64
    public let name: String
    public let recipient: String
    public let status: Status
    public let createdBy: String
    public let createdAt: Date
    public let retiredAt: Date?
}

/// One split of an epoch's identity: `threshold` of its `shareCount` shares recover it.
public struct CustodyShareSet: Sendable, Hashable, Codable {
    public let id: Int64
    public let epochID: Int64
    public let ceremonyID: Int64
    public let threshold: Int
    public let shareCount: Int
    public let status: EscrowEpoch.Status
}

/// One custodian's share as recorded: never the share, only its commitments.
public struct CustodyShare: Sendable, Hashable, Codable {
    public let id: Int64
    public let shareSetID: Int64
    public let x: Int
    public let custodian: String
    public let custodianRecipient: String
    /// SHA-256 of the age file handed to the custodian.
    public let fileSHA256: String
    /// SHA-256 of the share document inside it.
    public let shareSHA256: String
    /// Reported lost (`keyline custody lost`): no longer counted as reachable.
    public let lost: Bool
}

/// A recorded share with the set and epoch it belongs to.
public struct RecordedShare: Sendable, Hashable {
    public let share: CustodyShare
    public let set: CustodyShareSet
    public let epoch: EscrowEpoch
}

/// What a share set records for each share it makes.
public struct NewCustodyShare: Sendable, Hashable {
    public var x: Int
    public var custodian: String
    public var custodianRecipient: String
    public var fileSHA256: String
    public var shareSHA256: String

    public init(x: Int, custodian: String, custodianRecipient: String, fileSHA256: String, shareSHA256: String) {
        self.x = x
        self.custodian = custodian
        self.custodianRecipient = custodianRecipient
        self.fileSHA256 = fileSHA256
        self.shareSHA256 = shareSHA256
    }
}

/// A new epoch's public half and its first share set.
public struct NewEscrowEpoch: Sendable, Hashable {
    public var name: String
    public var recipient: String
    public var threshold: Int
    public var shares: [NewCustodyShare]

    public init(name: String, recipient: String, threshold: Int, shares: [NewCustodyShare]) {
        self.name = name
        self.recipient = recipient
        self.threshold = threshold
        self.shares = shares
    }
}

public enum CustodyCeremonyKind: String, Sendable, Codable { case create, recovery, reshare, rotate }

/// A recorded ceremony: what was done, to which epoch, by whom (the database login), where, when.
public struct CustodyCeremony: Sendable, Hashable, Codable {
    public let id: Int64
    public let kind: CustodyCeremonyKind
    public let epochID: Int64
    public let newEpochID: Int64?
    public let productID: String?
    public let station: String
    public let `operator`: String
    public let startedAt: Date
    public let finishedAt: Date?
}

/// A registration a rotation still has to move: its current object (and generation).
public struct RotationItem: Sendable, Hashable {
    public let registration: KeyRegistration
    public let current: EscrowObject
    public let currentGeneration: Int
}

/// What a rotation recorded before writing an object (its write-ahead intent).
public struct RotationIntent: Sendable, Hashable {
    public let generation: Int
    public let storeURI: String
    public let objectKey: String
    public let ciphertextSHA256: String
    public let sizeBytes: Int64

    public init(generation: Int, storeURI: String, objectKey: String, ciphertextSHA256: String, sizeBytes: Int64) {
        self.generation = generation
        self.storeURI = storeURI
        self.objectKey = objectKey
        self.ciphertextSHA256 = ciphertextSHA256
        self.sizeBytes = sizeBytes
    }
}
