import Custody
import Registry

/// `keyline restore … --shares`: the escrow epoch's identity rebuilt from custodians' share files
/// for this session only (never written), checked against the epoch's recorded recipient, and
/// the recovery recorded as a ceremony (which shares, so which custodians) before any device is
/// touched; each device restored under it is linked to that ceremony afterwards.
public struct RestoreShares: Sendable {
    public var files: [String]
    /// Custodian identity files brought to the bench (`--custodian-identity`).
    public var custodianIdentityFiles: [String]
    public var epoch: String?
    /// Asks a custodian for their identity at the bench, when no file opens their share.
    public var prompt: CustodianIdentityPrompt?

    public init(files: [String], custodianIdentityFiles: [String] = [], epoch: String? = nil,
                prompt: CustodianIdentityPrompt? = nil) {
        self.files = files
        self.custodianIdentityFiles = custodianIdentityFiles
        self.epoch = epoch
        self.prompt = prompt
    }

    /// The recovered epoch and its recorded recovery ceremony. Nothing is recorded when a share is refused.
    func recover(_ registry: RegistryDatabase, station: String) async throws -> (RecoveredEpoch, CustodyCeremony) {
        let recovered = try await ShareRecovery.withIdentityFiles(custodianIdentityFiles, registry: registry, prompt: prompt)
            .recover(files, epochName: epoch)
        let ceremony = try await EpochCeremonies(registry: registry, station: station).recordRecovery(recovered)
        return (recovered, ceremony)
    }

    /// Links the restorations done under `ceremony` (the failed ones too, where they were recorded).
    static func link(_ restorationIDs: [Int64], to ceremony: CustodyCeremony, registry: RegistryDatabase) async throws {
        for id in restorationIDs { try await registry.recordRestorationUnder(ceremonyID: ceremony.id, restorationID: id) }
    }
}
