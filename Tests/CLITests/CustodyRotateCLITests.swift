import Age
import Custody
import DeviceKeys
import Escrow
import Foundation
import Registry
import Testing
import TestSupport

/// `keyline custody rotate` killed with SIGKILL at random points and resumed: in the end every
/// registration points at a generation-2 object that Debian's `age` opens with the new epoch's
/// identity (rebuilt here from its shares) to the registered key, each object rotated once, and
/// the old objects untouched.
@Suite("keyline custody rotate under SIGKILL", .serialized)
struct CustodyRotateCLITests {
    /// Starts keyline and kills it with SIGKILL after `delay` if it still runs (nil: lets it finish);
    /// its exit status when it was not killed.
    static func runAndKill(_ environment: [String: String], _ arguments: [String], after delay: Duration?) async throws -> Int32? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Subprocess.keyline)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        var killed = false
        if let delay {
            try await Task.sleep(for: delay)
            killed = process.isRunning && kill(process.processIdentifier, SIGKILL) == 0
        }
        await process.waitForExit()
        return killed && process.terminationReason == .uncaughtSignal ? nil : process.terminationStatus
    }

    @Test("rotate 50 backups, killed at random points, resumed: all at generation 2 under the new epoch", .timeLimit(.minutes(10)))
    func killedAndResumed() async throws {
        let line = try await ProvisionLine(seed: 43) { _ in }
        defer { Task { await line.stop() } }
        let scratch = line.scratch
        let (oldFiles, oldArguments) = try CustodyCLITests.custodians(CustodyCLITests.names, in: scratch, tag: "old")
        let created = try await line.keyline(["custody", "create", "epoch-1", "--threshold", "3", "--out", scratch.path("old-shares"),
                                              "--json"] + oldArguments).requireSuccess()
        let oldShares = try CustodyCLITests.shareFiles(created)
        let registry = try await line.registry()
        let oldEpoch = try #require(try await registry.epoch(named: "epoch-1"))
        let store = DirectoryEscrowStore(root: line.store)
        let backed = try await BackedUpKeys(registry, store: store, product: "rotated", count: 50,
                                            recipients: [try X25519Recipient(oldEpoch.recipient)])
        let before = try await registry.registrations(productID: "rotated")

        // --dry-run lists all 50 and writes nothing.
        let dry = try await line.keyline(["custody", "rotate", "--dry-run", "--from", "epoch-1", "--json"]).requireSuccess()
        #expect(dry.stdout.split(separator: "\n").filter { $0.contains("\"dryRun\":true") }.count == 50)
        #expect(try await registry.unfinishedRotations().isEmpty)

        let (newFiles, newArguments) = try CustodyCLITests.custodians(["xavier", "yolanda", "zoe"], in: scratch, tag: "new")
        let shareArguments = ["--shares", oldShares[0], oldShares[2], oldShares[4]] + oldFiles.flatMap { ["--custodian-identity", $0] }
        var generator = SystemRandomNumberGenerator()
        var kills = 0, attempts = 0, finished = false
        var newShareFolder = ""
        while !finished {
            attempts += 1
            #expect(attempts <= 40, "the rotation never finished")
            if attempts > 40 { return }
            let arguments: [String]
            if let ceremony = try await registry.unfinishedRotations().first {
                arguments = ["custody", "rotate", "--resume", String(ceremony.id)] + shareArguments
            } else if try await registry.epoch(named: "epoch-2") == nil {
                // Killed before the ceremony was recorded: start again (its share files went to another folder).
                newShareFolder = scratch.path("new-shares-\(attempts)")
                arguments = ["custody", "rotate", "--new-epoch", "epoch-2", "--threshold", "2", "--out", newShareFolder]
                    + newArguments + shareArguments
            } else {
                break
            }
            // The last attempts run to the end.
            let delay: Duration? = kills < 8 ? .milliseconds(Int.random(in: 20...500, using: &generator)) : nil
            if let status = try await Self.runAndKill(line.environment, arguments, after: delay) {
                #expect(status == 0, "keyline \(arguments.joined(separator: " ")) exited \(status)")
                finished = status == 0
            } else {
                kills += 1
            }
        }
        #expect(kills >= 3, "only \(kills) kills landed in \(attempts) runs")
        #expect(try await registry.unfinishedRotations().isEmpty)
        #expect(try await registry.epoch(named: "epoch-1")?.status == .retired)

        // The new epoch's identity, rebuilt from two of its shares, written to a file for Debian's age.
        let newShares = try FileManager.default.contentsOfDirectory(atPath: newShareFolder).sorted().map { "\(newShareFolder)/\($0)" }
        let newIdentity = try await ShareRecovery.withIdentityFiles(newFiles, registry: registry).recover(Array(newShares.prefix(2))).identity
        try scratch.write("epoch-2-identity.txt", Array(newIdentity.identityFile().utf8))
        let age = try ExternalTool("age")
        for entry in before {
            let registration = entry.registration
            let (object, generation) = try #require(try await registry.currentEscrowObject(registrationID: registration.id))
            #expect(generation == 2 && object.objectKey.hasSuffix(".g2.age"))
            let opened = try await age.run(["-d", "-i", scratch.path("epoch-2-identity.txt"),
                                            line.store.appendingPathComponent(object.objectKey).path]).requireSuccess()
            let backup = try EscrowBackup.decode(opened.stdoutBytes)
            #expect(backup.privateKey.der == backed.keys[registration.deviceID]?.der)
            #expect(backup.privateKey.publicKey.fingerprint == registration.fingerprint)
            // Generation 1, untouched.
            let first = entry.escrowObject
            _ = try await store.get(try #require(EscrowObjectKey(path: first.objectKey)), expectedSHA256: first.ciphertextSHA256)
        }
        // One event per object, however many times the run was killed.
        let events = try await registry.events().filter { $0.kind == "escrow.rotated" }
        #expect(events.count == 50)
        #expect(Set(events.compactMap(\.deviceID)).count == 50)
        // The audit finds nothing wrong with the generations.
        let audit = try await line.keyline(["audit", "--product", "rotated", "--format", "json", "--check-store",
                                            "--decrypt", "--identity", scratch.path("epoch-2-identity.txt")])
        #expect(audit.status == 0, "\(audit.stdout)\(audit.stderr)")
        #expect(!audit.stdout.contains("backup_does_not_decrypt") && !audit.stdout.contains("orphan_object"), "\(audit.stdout)")
        #expect(!audit.stdout.contains("generation_not_registered"), "\(audit.stdout)")
        #expect(!audit.stdout.contains("backup_under_retired_epoch"), "\(audit.stdout)")

        // What the audit must find afterwards: a station still escrowing to the retired epoch (its
        // pipeline never updated), and a later-generation object nothing records.
        let late = try await BackedUpKeys(registry, store: store, product: "rotated", count: 1,
                                          recipients: [try X25519Recipient(oldEpoch.recipient)])
        let lateDevice = try #require(late.keys.keys.first)
        let stray = try #require(before.first).registration
        let strayKey = "rotated/\(stray.deviceID)/\(stray.fingerprint).g3.age"
        _ = try await registry.recordEscrowObject(NewEscrowObject(
            productID: "rotated", deviceID: stray.deviceID, publicKeySHA256: stray.fingerprint, storeURI: store.storeURI,
            objectKey: strayKey, ciphertextSHA256: String(repeating: "cd", count: 32), sizeBytes: 100,
            recipients: [oldEpoch.recipient], jobID: nil, station: "line-1"))
        let findings = try await line.keyline(["audit", "--product", "rotated", "--format", "json"])
        #expect(findings.status != 0, "an error finding must fail the audit: \(findings.stdout)")
        let lines = findings.stdout.split(separator: "\n").map(String.init)
        #expect(lines.contains { $0.contains("backup_under_retired_epoch") && $0.contains(lateDevice) && $0.contains("epoch-1") },
                "\(findings.stdout)")
        #expect(lines.contains { $0.contains("generation_not_registered") && $0.contains(strayKey) }, "\(findings.stdout)")
        #expect(lines.filter { $0.contains("\"code\":\"backup_under_retired_epoch\"") }.count == 1, "\(findings.stdout)")
    }
}
