import Foundation
import Testing
@testable import Registry

/// Who may run and read custody ceremonies (schema 0012), with real logins: an RMA/officer login
/// bound to its bench runs them; a station reads only the epochs; an auditor reads every record.
@Suite("Custody roles")
struct CustodyRoleTests {
    static let recipient = "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj"

    static func epoch(_ name: String) -> NewEscrowEpoch {
        NewEscrowEpoch(name: name, recipient: recipient, threshold: 2, shares: (1...3).map { x in
            NewCustodyShare(x: x, custodian: "custodian\(x)", custodianRecipient: recipient,
                            fileSHA256: String(repeating: String(x), count: 64),
                            shareSHA256: String(repeating: String(x + 3), count: 64))
        })
    }

    @Test("an RMA login bound to its bench records epochs; a station cannot, and reads no shares; an auditor reads all")
    func grants() async throws {
        try await withTestDatabase { database in
            let (rmaUser, rma) = try await database.login(memberOf: "keyline_rma", station: "officer-bench")
            let (epoch, ceremony) = try await rma.createEpoch(Self.epoch("e1"), station: "officer-bench")
            #expect(ceremony.operator == rmaUser && ceremony.kind == .create && ceremony.epochID == epoch.id)
            #expect(epoch.createdBy == rmaUser)
            // Another bench's name is refused by the database.
            await expectServerError("42501") {
                _ = try await rma.recordRecovery(epochID: epoch.id, shareIDs: [], station: "other-bench")
            }

            let (_, station) = try await database.login(memberOf: "keyline_station")
            #expect(try await station.epochs().map(\.name) == ["e1"])
            await expectServerError("42501") { _ = try await station.activeShares(epochID: epoch.id) }
            await expectServerError("42501") { _ = try await station.createEpoch(Self.epoch("e2"), station: RegistryFixture.station) }

            let (_, auditor) = try await database.login(memberOf: "keyline_auditor")
            let (set, shares) = try #require(try await auditor.activeShares(epochID: epoch.id))
            #expect(set.threshold == 2 && shares.map(\.x) == [1, 2, 3])
            await expectServerError("42501") { _ = try await auditor.recordShareLost(shareID: shares[0].id, reason: "x", station: "a") }

            // Records are append-only: no role, the owner included, rewrites a share or deletes an epoch.
            let admin = try await database.registry()
            let connection = admin.client
            await expectServerError("23000") {
                _ = try await connection.transaction(isolation: .readCommitted) { transaction in
                    try transaction.execute("UPDATE custody_shares SET custodian = 'mallory'")
                }
            }
            await expectServerError("23000") {
                _ = try await connection.transaction(isolation: .readCommitted) { transaction in
                    try transaction.execute("DELETE FROM escrow_epochs")
                }
            }
        }
    }
}
