import FailurePolicy
import Foundation

/// Why the registry refused a custody record.
public enum CustodyRecordError: Error, Sendable, Hashable, CustomStringConvertible, ClassifiedError {
    case epochExists(String)

    public var description: String {
        switch self {
        case .epochExists(let name): "an escrow epoch named \(name) (or with its recipient) already exists; choose another name"
        }
    }

    public var failureClass: FailureClass { .badInput }
}

/// Escrow epochs, share sets and ceremonies (schema 0012). Each ceremony is recorded in the one
/// transaction that records what it did, with an event naming it.
extension RegistryDatabase {
    static let epochColumns = "id, name, recipient, status, created_by, created_at, retired_at"
    static let shareSetColumns = "id, epoch_id, ceremony_id, threshold, share_count, status"
    static let ceremonyColumns = "id, kind, epoch_id, new_epoch_id, product_id, station, operator, started_at, finished_at"

    /// Records a new epoch, its creation ceremony and its first share set (every share's
    /// custodian and commitments). The names are unique; the recipient too.
    public func createEpoch(_ epoch: NewEscrowEpoch, station: String) async throws -> (EscrowEpoch, CustodyCeremony) {
        do {
            return try await run("create escrow epochs") { transaction in
                try Self.createEpoch(epoch, kind: .create, fromEpochID: nil, productID: nil, shareIDs: [],
                                     station: station, in: transaction)
            }
        } catch RegistryError.database(let error) where error.isUniqueViolation {
            throw CustodyRecordError.epochExists(epoch.name)
        }
    }

    /// The epoch row, its ceremony (`create`, or `rotate` from `fromEpochID`) and its first share set.
    static func createEpoch(_ epoch: NewEscrowEpoch, kind: CustodyCeremonyKind, fromEpochID: Int64?, productID: String?,
                            shareIDs: [Int64], station: String,
                            in transaction: PostgresTransaction) throws -> (EscrowEpoch, CustodyCeremony) {
        let created = try Self.insertEpoch(epoch, in: transaction)
        let ceremony = try Self.insertCeremony(kind: kind, epochID: fromEpochID ?? created.id,
                                               newEpochID: fromEpochID == nil ? nil : created.id, productID: productID,
                                               station: station, shareIDs: shareIDs, in: transaction)
        try Self.insertShareSet(epochID: created.id, ceremonyID: ceremony.id, threshold: epoch.threshold,
                                shares: epoch.shares, in: transaction)
        try Self.appendEvent(kind: "custody.epoch_created", station: station, productID: productID, deviceID: nil, jobID: nil,
                             detail: ["epoch": epoch.name, "recipient": epoch.recipient, "ceremony_id": String(ceremony.id),
                                      "threshold": String(epoch.threshold), "shares": String(epoch.shares.count),
                                      "ceremony": kind.rawValue],
                             in: transaction)
        return (created, ceremony)
    }

    public func epochs() async throws -> [EscrowEpoch] {
        try await run("read escrow epochs") { transaction in
            try transaction.query("SELECT \(Self.epochColumns) FROM escrow_epochs ORDER BY id").map(Self.epoch)
        }
    }

    public func epoch(named name: String) async throws -> EscrowEpoch? {
        try await run("read escrow epochs") { transaction in
            try transaction.queryOne("SELECT \(Self.epochColumns) FROM escrow_epochs WHERE name = $1", [name]).map(Self.epoch)
        }
    }

    /// The epoch's active share set and its shares (lost ones included, flagged).
    public func activeShares(epochID: Int64) async throws -> (CustodyShareSet, [CustodyShare])? {
        try await run("read custody shares") { transaction in
            guard let set = try transaction.queryOne("""
                SELECT \(Self.shareSetColumns) FROM custody_share_sets WHERE epoch_id = $1 AND status = 'active'
                """, [epochID]).map(Self.shareSet) else { return nil }
            let shares = try transaction.query("""
                SELECT s.*, l.share_id IS NOT NULL AS lost FROM custody_shares s
                LEFT JOIN custody_share_losses l ON l.share_id = s.id WHERE s.share_set_id = $1 ORDER BY s.x
                """, [set.id]).map(Self.share)
            return (set, shares)
        }
    }

    /// The recorded share whose file (`fileSHA256`) or document (`shareSHA256`) hashes so.
    public func recordedShare(fileSHA256: String? = nil, shareSHA256: String? = nil) async throws -> RecordedShare? {
        try await run("read custody shares") { transaction in
            guard let row = try transaction.queryOne("""
                SELECT s.*, l.share_id IS NOT NULL AS lost FROM custody_shares s
                LEFT JOIN custody_share_losses l ON l.share_id = s.id
                WHERE s.file_sha256 = $1 OR s.share_sha256 = $2
                """, [fileSHA256, shareSHA256]) else { return nil }
            let share = try Self.share(row)
            let set = try transaction.queryOne("SELECT \(Self.shareSetColumns) FROM custody_share_sets WHERE id = $1",
                                               [share.shareSetID]).map(Self.shareSet)!
            let epoch = try transaction.queryOne("SELECT \(Self.epochColumns) FROM escrow_epochs WHERE id = $1",
                                                 [set.epochID]).map(Self.epoch)!
            return RecordedShare(share: share, set: set, epoch: epoch)
        }
    }

    /// Records a recovery: which shares (so which custodians) were brought, for which epoch.
    public func recordRecovery(epochID: Int64, shareIDs: [Int64], station: String) async throws -> CustodyCeremony {
        try await run("record custody ceremonies") { transaction in
            let ceremony = try Self.insertCeremony(kind: .recovery, epochID: epochID, newEpochID: nil, productID: nil,
                                                   station: station, shareIDs: shareIDs, in: transaction)
            try Self.appendEvent(kind: "custody.recovered", station: station, productID: nil, deviceID: nil, jobID: nil,
                                 detail: ["ceremony_id": String(ceremony.id), "epoch_id": String(epochID),
                                          "share_ids": shareIDs.map(String.init).joined(separator: ",")],
                                 in: transaction)
            return ceremony
        }
    }

    /// Records that `restorationID` was done under recovery `ceremonyID`.
    public func recordRestorationUnder(ceremonyID: Int64, restorationID: Int64) async throws {
        _ = try await run("record custody ceremonies") { transaction in
            try transaction.execute("INSERT INTO custody_ceremony_restorations (ceremony_id, restoration_id) VALUES ($1, $2)",
                                    [ceremonyID, restorationID])
        }
    }

    /// The restorations done under a ceremony, by id.
    public func restorationIDs(underCeremony ceremonyID: Int64) async throws -> [Int64] {
        try await run("read custody ceremonies") { transaction in
            try transaction.query("SELECT restoration_id FROM custody_ceremony_restorations WHERE ceremony_id = $1 ORDER BY restoration_id",
                                  [ceremonyID]).map { try $0.decode("restoration_id") }
        }
    }

    /// Records a reshare: the shares brought, the old set retired and the new one recorded, at once.
    public func recordReshare(epochID: Int64, shareIDs: [Int64], threshold: Int, shares: [NewCustodyShare],
                              station: String) async throws -> CustodyCeremony {
        try await run("record custody ceremonies") { transaction in
            let ceremony = try Self.insertCeremony(kind: .reshare, epochID: epochID, newEpochID: nil, productID: nil,
                                                   station: station, shareIDs: shareIDs, in: transaction)
            try transaction.execute("UPDATE custody_share_sets SET status = 'retired' WHERE epoch_id = $1 AND status = 'active'",
                                    [epochID])
            try Self.insertShareSet(epochID: epochID, ceremonyID: ceremony.id, threshold: threshold, shares: shares, in: transaction)
            try Self.appendEvent(kind: "custody.reshared", station: station, productID: nil, deviceID: nil, jobID: nil,
                                 detail: ["ceremony_id": String(ceremony.id), "epoch_id": String(epochID),
                                          "threshold": String(threshold), "shares": String(shares.count)],
                                 in: transaction)
            return ceremony
        }
    }

    /// Reports a share lost: it no longer counts as reachable in the audit.
    public func recordShareLost(shareID: Int64, reason: String, station: String) async throws {
        try await run("record custody share losses") { transaction in
            try transaction.execute("INSERT INTO custody_share_losses (share_id, reason) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                                    [shareID, reason])
            try Self.appendEvent(kind: "custody.share_lost", station: station, productID: nil, deviceID: nil, jobID: nil,
                                 detail: ["share_id": String(shareID), "reason": reason], in: transaction)
        }
    }

    public func ceremony(id: Int64) async throws -> CustodyCeremony? {
        try await run("read custody ceremonies") { transaction in
            try transaction.queryOne("SELECT \(Self.ceremonyColumns) FROM custody_ceremonies WHERE id = $1", [id]).map(Self.ceremony)
        }
    }

    /// The shares brought to a ceremony.
    public func ceremonyShareIDs(_ ceremonyID: Int64) async throws -> [Int64] {
        try await run("read custody ceremonies") { transaction in
            try transaction.query("SELECT share_id FROM custody_ceremony_shares WHERE ceremony_id = $1 ORDER BY share_id",
                                  [ceremonyID]).map { try $0.decode("share_id") }
        }
    }

    // MARK: Rows

    static func insertEpoch(_ epoch: NewEscrowEpoch, in transaction: PostgresTransaction) throws -> EscrowEpoch {
        try Self.epoch(transaction.queryOne("""
            INSERT INTO escrow_epochs (name, recipient) VALUES ($1, $2) RETURNING \(epochColumns)
            """, [epoch.name, epoch.recipient])!)
    }

    static func insertCeremony(kind: CustodyCeremonyKind, epochID: Int64, newEpochID: Int64?, productID: String?,
                               station: String, shareIDs: [Int64], in transaction: PostgresTransaction) throws -> CustodyCeremony {
        let ceremony = try Self.ceremony(transaction.queryOne("""
            INSERT INTO custody_ceremonies (kind, epoch_id, new_epoch_id, product_id, station)
            VALUES ($1, $2, $3, $4, $5) RETURNING \(ceremonyColumns)
            """, [kind.rawValue, epochID, newEpochID, productID, station])!)
        for shareID in shareIDs {
            try transaction.execute("INSERT INTO custody_ceremony_shares (ceremony_id, share_id) VALUES ($1, $2)",
                                    [ceremony.id, shareID])
        }
        return ceremony
    }

    static func insertShareSet(epochID: Int64, ceremonyID: Int64, threshold: Int, shares: [NewCustodyShare],
                               in transaction: PostgresTransaction) throws {
        let set = try Self.shareSet(transaction.queryOne("""
            INSERT INTO custody_share_sets (epoch_id, ceremony_id, threshold, share_count) VALUES ($1, $2, $3, $4)
            RETURNING \(shareSetColumns)
            """, [epochID, ceremonyID, threshold, shares.count])!)
        for share in shares {
            try transaction.execute("""
                INSERT INTO custody_shares (share_set_id, x, custodian, custodian_recipient, file_sha256, share_sha256)
                VALUES ($1, $2, $3, $4, $5, $6)
                """, [set.id, share.x, share.custodian, share.custodianRecipient, share.fileSHA256, share.shareSHA256])
        }
    }

    static func epoch(_ row: PostgresRow) throws -> EscrowEpoch {
        EscrowEpoch(id: try row.decode("id"), name: try row.decode("name"), recipient: try row.decode("recipient"),
                    status: try enumValue(row, "status"), createdBy: try row.decode("created_by"),
                    createdAt: try row.decode("created_at"), retiredAt: try row.decode("retired_at"))
    }

    static func shareSet(_ row: PostgresRow) throws -> CustodyShareSet {
        CustodyShareSet(id: try row.decode("id"), epochID: try row.decode("epoch_id"), ceremonyID: try row.decode("ceremony_id"),
                        threshold: try row.decode("threshold"), shareCount: try row.decode("share_count"),
                        status: try enumValue(row, "status"))
    }

    static func share(_ row: PostgresRow) throws -> CustodyShare {
        CustodyShare(id: try row.decode("id"), shareSetID: try row.decode("share_set_id"), x: try row.decode("x"),
                     custodian: try row.decode("custodian"), custodianRecipient: try row.decode("custodian_recipient"),
                     fileSHA256: try row.decode("file_sha256"), shareSHA256: try row.decode("share_sha256"),
                     lost: try row.decode("lost"))
    }

    static func ceremony(_ row: PostgresRow) throws -> CustodyCeremony {
        CustodyCeremony(id: try row.decode("id"), kind: try enumValue(row, "kind"), epochID: try row.decode("epoch_id"),
                        newEpochID: try row.decode("new_epoch_id"), productID: try row.decode("product_id"),
                        station: try row.decode("station"), operator: try row.decode("operator"),
                        startedAt: try row.decode("started_at"), finishedAt: try row.decode("finished_at"))
    }
}
