import Age
import Foundation
import LocalFiles
import Registry

/// A new epoch's result: its record and the share files written (one per custodian).
public struct EpochCreated: Sendable {
    public let epoch: EscrowEpoch
    public let ceremony: CustodyCeremony
    public let threshold: Int
    public let shareFiles: [String]
}

/// The custody ceremonies that need no device: making an epoch, resharing it, reporting a share
/// lost, and recording a recovery (design.md, "Custody of the escrow identity"). The identity is
/// made or rebuilt in memory and never written; only share files (each to one custodian) are.
public struct EpochCeremonies: Sendable {
    public let registry: RegistryDatabase
    /// The bench or officer station the ceremony is recorded at.
    public let station: String

    public init(registry: RegistryDatabase, station: String) {
        self.registry = registry
        self.station = station
    }

    /// Makes epoch `name`: a fresh X25519 identity in memory, split `threshold`-of-`custodians`,
    /// each share an age file to its custodian in `folder`; then the registry records it. The
    /// files are written first: if recording fails they open nothing anyone uses (no station
    /// encrypts to an unrecorded epoch).
    public func create(name: String, threshold: Int, custodians: [Custodian], folder: String) async throws -> EpochCreated {
        try EpochSplit.check(epochName: name, threshold: threshold, custodians: custodians)
        if try await registry.epoch(named: name) != nil { throw CustodyRecordError.epochExists(name) }
        let split = try EpochSplit(X25519Identity.generate(), epochName: name, threshold: threshold, custodians: custodians)
        let paths = try await offPool { try split.writeFiles(into: folder) }
        let (epoch, ceremony) = try await registry.createEpoch(split.newEpoch, station: station)
        return EpochCreated(epoch: epoch, ceremony: ceremony, threshold: threshold, shareFiles: paths)
    }

    /// Re-splits a recovered epoch to a new custodian set (same identity, so no backup changes);
    /// the old set is retired in the transaction that records the new one.
    public func reshare(_ recovered: RecoveredEpoch, threshold: Int, custodians: [Custodian],
                        folder: String) async throws -> EpochCreated {
        guard recovered.epoch.status == .active else { throw CustodyError.retiredEpoch(recovered.epoch.name) }
        // A new set's files must not collide with the old set's: they carry the ceremony time.
        let stamp = Int(Date().timeIntervalSince1970)
        let split = try EpochSplit(recovered.identity, epochName: recovered.epoch.name, threshold: threshold,
                                   custodians: custodians, fileTag: "r\(stamp)")
        let paths = try await offPool { try split.writeFiles(into: folder) }
        let ceremony = try await registry.recordReshare(epochID: recovered.epoch.id, shareIDs: recovered.shares.map(\.id),
                                                        threshold: threshold, shares: split.files.map(\.record), station: station)
        return EpochCreated(epoch: recovered.epoch, ceremony: ceremony, threshold: threshold, shareFiles: paths)
    }

    /// Records a recovery for restores: which shares were brought (so which custodians).
    public func recordRecovery(_ recovered: RecoveredEpoch) async throws -> CustodyCeremony {
        try await registry.recordRecovery(epochID: recovered.epoch.id, shareIDs: recovered.shares.map(\.id), station: station)
    }

    /// Reports `custodian`'s share of epoch `epochName`'s active set lost.
    public func reportLost(epochName: String, custodian: String, reason: String) async throws -> CustodyShare {
        guard let epoch = try await registry.epoch(named: epochName) else { throw CustodyError.unknownEpoch(epochName) }
        guard let share = try await registry.activeShares(epochID: epoch.id)?.1.first(where: { $0.custodian == custodian }) else {
            throw CustodyError.invalidCustodians("\(custodian) holds no share of epoch \(epochName)'s current set")
        }
        try await registry.recordShareLost(shareID: share.id, reason: reason, station: station)
        return share
    }
}
