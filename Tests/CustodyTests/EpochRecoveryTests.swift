import Age
import Custody
import Escrow
import DeviceKeys
import Foundation
import Registry
import Testing
import TestSupport

/// A 3-of-5 epoch with real files: the shares are age files Debian's `age` opens, any three
/// rebuild the identity, two do not, and every bad share is refused by name.
@Suite("Escrow epochs and recovery", .serialized)
struct EpochRecoveryTests {
    @Test("3-of-5: share files are 0600 age files to each custodian; the registry holds commitments only")
    func creation() async throws {
        try await TestPostgres.withMigratedDatabase { registry in
            let scratch = try ScratchDirectory(label: "custody-create")
            defer { scratch.remove() }
            let fixture = try await CustodyFixture(registry, scratch: scratch)
            #expect(fixture.created.shareFiles.count == 5)
            for path in fixture.created.shareFiles {
                let name = (path as NSString).lastPathComponent
                #expect(try scratch.mode("shares/\(name)") == 0o600)
            }
            let (set, shares) = try #require(try await registry.activeShares(epochID: fixture.created.epoch.id))
            #expect(set.threshold == 3 && set.shareCount == 5)
            #expect(shares.map(\.custodian) == CustodyFixture.names)
            #expect(fixture.created.epoch.recipient.hasPrefix("age1"))
            // The identity was never written: no file in the share folder opens a backup to the epoch.
            let events = try await registry.events()
            #expect(events.contains { $0.kind == "custody.epoch_created" && $0.detail["epoch"] == "epoch-1" })
            // Debian's age opens each share with its custodian's identity, and nothing else.
            let age = try ExternalTool("age")
            for (index, path) in fixture.created.shareFiles.enumerated() {
                let opened = try await age.run(["-d", "-i", fixture.custodianFiles[index], path]).requireSuccess()
                #expect(opened.stdout.contains("\"custodian\":\"\(CustodyFixture.names[index])\""))
                #expect(Age.sha256(opened.stdoutBytes) == shares[index].shareSHA256)
                let wrong = try await age.run(["-d", "-i", fixture.custodianFiles[(index + 1) % 5], path])
                #expect(wrong.status != 0)
            }
        }
    }

    @Test("any 3 shares rebuild the epoch identity, which Debian's age uses to open a backup; any 2 do not")
    func anyThreeOfFive() async throws {
        try await TestPostgres.withMigratedDatabase { registry in
            let scratch = try ScratchDirectory(label: "custody-any3")
            defer { scratch.remove() }
            let fixture = try await CustodyFixture(registry, scratch: scratch)
            let recovery = ShareRecovery(registry: registry, identities: fixture.allIdentities)
            for chosen in subsets(5, 3) {
                let recovered = try await recovery.recover(chosen.map { fixture.created.shareFiles[$0] })
                #expect(recovered.identity.recipient.description == fixture.created.epoch.recipient)
                #expect(recovered.shares.map(\.custodian) == chosen.map { CustodyFixture.names[$0] })
            }
            for chosen in subsets(5, 2) {
                await #expect(throws: CustodyError.tooFewShares(epoch: "epoch-1", have: 2, need: 3)) {
                    _ = try await recovery.recover(chosen.map { fixture.created.shareFiles[$0] })
                }
            }
            // Custodians who ran `age -d` themselves bring the decrypted document instead.
            let age = try ExternalTool("age")
            var documents: [String] = []
            for index in [0, 2, 4] {
                let opened = try await age.run(["-d", "-i", fixture.custodianFiles[index], fixture.created.shareFiles[index]])
                    .requireSuccess()
                try scratch.write("opened-\(index).json", opened.stdoutBytes)
                documents.append(scratch.path("opened-\(index).json"))
            }
            let recovered = try await ShareRecovery(registry: registry).recover(documents)
            #expect(recovered.identity.recipient.description == fixture.created.epoch.recipient)

            // The combined identity, written to a file inside this test only, opens a backup with Debian's age.
            let key = try DevicePrivateKey.generate(.ec)
            let backup = try EscrowBackup(deviceID: "e00fce68aaaaaaaaaaaaaaaa", platform: "boron", product: "custody",
                                      privateKey: key, job: "test", station: "test")
            try scratch.write("backup.age", try backup.encrypt(to: [try X25519Recipient(fixture.created.epoch.recipient)]))
            try scratch.write("epoch-identity.txt", Array(recovered.identity.identityFile().utf8))
            let opened = try await age.run(["-d", "-i", scratch.path("epoch-identity.txt"), scratch.path("backup.age")])
                .requireSuccess()
            #expect(try EscrowBackup.decode(opened.stdoutBytes).privateKey.der == key.der)
        }
    }

    @Test("a tampered, duplicated, other-epoch or unopenable share is named and never used")
    func badShares() async throws {
        try await TestPostgres.withMigratedDatabase { registry in
            let scratch = try ScratchDirectory(label: "custody-bad")
            defer { scratch.remove() }
            let fixture = try await CustodyFixture(registry, scratch: scratch)
            let other = try await CustodyFixture(registry, scratch: scratch, epoch: "epoch-2", folder: "other-shares")
            let files = fixture.created.shareFiles
            let recovery = ShareRecovery(registry: registry, identities: fixture.allIdentities + other.allIdentities)

            func refused(_ paths: [String], _ kind: ShareProblem.Kind, naming path: String,
                         with recovery: ShareRecovery, sourceLocation: SourceLocation = #_sourceLocation) async throws {
                do {
                    _ = try await recovery.recover(paths)
                    Issue.record("recovered from \(paths)", sourceLocation: sourceLocation)
                } catch CustodyError.sharesRefused(let problems) {
                    #expect(problems.map(\.kind) == [kind], sourceLocation: sourceLocation)
                    #expect(problems.map(\.path) == [path], sourceLocation: sourceLocation)
                    #expect("\(CustodyError.sharesRefused(problems))".contains(path), sourceLocation: sourceLocation)
                }
            }

            // One byte of a share file changed.
            var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: files[1])))
            bytes[bytes.count - 3] ^= 0x01
            try scratch.write("tampered.age", bytes)
            try await refused([files[0], scratch.path("tampered.age"), files[2]], .unknown, naming: scratch.path("tampered.age"),
                              with: recovery)
            // A decrypted document with its share altered.
            let age = try ExternalTool("age")
            var document = try await age.run(["-d", "-i", fixture.custodianFiles[3], files[3]]).requireSuccess().stdout
            let marker = "\"share\":\""
            let at = document.range(of: marker)!.upperBound
            document.replaceSubrange(at..<document.index(after: at), with: document[at] == "0" ? "1" : "0")
            try scratch.write("tampered.json", Array(document.utf8))
            try await refused([files[0], files[1], scratch.path("tampered.json")], .unknown, naming: scratch.path("tampered.json"),
                              with: recovery)
            // The same share twice (a copy of the file).
            try scratch.write("copy.age", try Array(Data(contentsOf: URL(fileURLWithPath: files[0]))))
            try await refused([files[0], scratch.path("copy.age"), files[2]], .duplicate, naming: scratch.path("copy.age"),
                              with: recovery)
            // A share of another epoch.
            try await refused([files[0], files[1], other.created.shareFiles[2]], .otherEpoch, naming: other.created.shareFiles[2],
                              with: recovery)
            // A custodian identity that opens nothing.
            let stranger = ShareRecovery(registry: registry, identities: [X25519Identity.generate()] + fixture.allIdentities.filter {
                $0.recipient != fixture.custodianIdentities[4].recipient })
            try await refused([files[0], files[1], files[4]], .notOpened, naming: files[4], with: stranger)
            // A prompt that gets the right identity opens it.
            let prompted = ShareRecovery(registry: registry, identities: Array(fixture.allIdentities.prefix(2))) { _, custodian in
                custodian == "erin" ? fixture.custodianIdentities[4] : nil
            }
            let recovered = try await prompted.recover([files[0], files[1], files[4]])
            #expect(recovered.identity.recipient.description == fixture.created.epoch.recipient)
        }
    }

    @Test("reshare to a new custodian set: the new shares recover the same identity, the old set is refused")
    func reshare() async throws {
        try await TestPostgres.withMigratedDatabase { registry in
            let scratch = try ScratchDirectory(label: "custody-reshare")
            defer { scratch.remove() }
            let fixture = try await CustodyFixture(registry, scratch: scratch)
            let recovered = try await ShareRecovery(registry: registry, identities: fixture.allIdentities)
                .recover(Array(fixture.created.shareFiles[2...4]))
            let newcomers = (0..<4).map { _ in X25519Identity.generate() }
            let custodians = zip(["frank", "grace", "heidi", "ivan"], newcomers).map { Custodian(name: $0, recipient: $1.recipient) }
            let reshared = try await EpochCeremonies(registry: registry, station: "officer-bench")
                .reshare(recovered, threshold: 2, custodians: custodians, folder: scratch.path("new-shares"))
            #expect(reshared.shareFiles.count == 4)
            #expect(try await registry.ceremonyShareIDs(reshared.ceremony.id) == recovered.shares.map(\.id))
            let again = try await ShareRecovery(registry: registry, identities: newcomers).recover(Array(reshared.shareFiles[1...2]))
            #expect(again.identity.recipient.description == fixture.created.epoch.recipient)
            // The old set is retired: its shares are named, not used.
            do {
                _ = try await ShareRecovery(registry: registry, identities: fixture.allIdentities)
                    .recover(Array(fixture.created.shareFiles[0...2]))
                Issue.record("the retired set recovered")
            } catch CustodyError.sharesRefused(let problems) {
                #expect(problems.map(\.kind) == [.retiredSet, .retiredSet, .retiredSet])
            }
        }
    }
}
