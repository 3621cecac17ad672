import DeviceKeys
import FailurePolicy
import Foundation
import Testing
import TestSupport
@testable import Escrow
@testable import Age

/// Escrow can be redone after a crash: the store adopts an object whose bytes match the hash the
/// registry recorded before the write, and stale temporary files of killed puts are swept.
@Suite struct EscrowRedoTests {
    static let key = DirectoryEscrowStoreTests.key
    static let fingerprint = String(repeating: "ab", count: 32)

    @Test func adoptsAnObjectWithTheRecordedBytesAndMakesItDurable() async throws {
        let scratch = try ScratchDirectory(label: "escrow")
        let root = scratch.file("escrow").path
        let directory = "\(root)/12345/e00fce68a1b2c3d4e5f60718"
        let path = "\(directory)/\(Self.fingerprint).age"
        // As a run that died after link(2), before its directory fsync, left it.
        let bytes = Array("ciphertext of a killed run".utf8)
        try makePrivateFolders(directory)
        try Data(bytes).write(to: URL(fileURLWithPath: path))

        let synced = SyncLog()
        let store = DirectoryEscrowStore(root: scratch.file("escrow"), syncObserver: { synced.append($0) })
        #expect(try await store.adopt(Self.key, expectedSHA256: Age.sha256(bytes).uppercased()))
        #expect(synced.paths == [path, directory, "\(root)/12345", root])
        #expect(FileManager.default.contents(atPath: path) == Data(bytes))
    }

    @Test func adoptReportsAnAbsentObjectWithoutCreatingAnything() async throws {
        let scratch = try ScratchDirectory(label: "escrow")
        let synced = SyncLog()
        let store = DirectoryEscrowStore(root: scratch.file("escrow"), syncObserver: { synced.append($0) })
        #expect(try await store.adopt(Self.key, expectedSHA256: Age.sha256([1, 2, 3])) == false)
        #expect(synced.paths.isEmpty)
        #expect(!FileManager.default.fileExists(atPath: scratch.file("escrow").path))
    }

    @Test func adoptRefusesAnObjectWithOtherBytesAndLeavesIt() async throws {
        let scratch = try ScratchDirectory(label: "escrow")
        let synced = SyncLog()
        let store = DirectoryEscrowStore(root: scratch.url, syncObserver: { synced.append($0) })
        let stored = Array("stored".utf8)
        _ = try await store.put(stored, at: Self.key)
        synced.paths = []
        let recorded = Age.sha256(Array("recorded".utf8))
        await #expect(throws: EscrowStoreError.checksumMismatch(Self.key, expected: recorded, actual: Age.sha256(stored))) {
            try await store.adopt(Self.key, expectedSHA256: recorded)
        }
        #expect(synced.paths.isEmpty)
        #expect(FileManager.default.contents(atPath: store.url(for: Self.key).path) == Data(stored))
        #expect(EscrowStoreError.checksumMismatch(Self.key, expected: recorded, actual: "").failureClass == .badDevice)
    }

    /// Only files named as a put names its temporary file, in an object directory, and older than
    /// the limit go; fresh ones (a put in progress), objects and anything else stay.
    @Test func sweepRemovesOnlyStaleTemporaryFiles() async throws {
        let scratch = try ScratchDirectory(label: "escrow")
        let store = DirectoryEscrowStore(root: scratch.url)
        _ = try await store.put(Array("object".utf8), at: Self.key)
        let other = try EscrowObjectKey(product: "p-2", deviceID: "0123456789abcdef01234567", publicKeySHA256: String(repeating: "cd", count: 32))
        _ = try await store.put(Array("other object".utf8), at: other)
        let directory = store.url(for: Self.key).deletingLastPathComponent().path
        let otherDirectory = store.url(for: other).deletingLastPathComponent().path

        func file(_ path: String, ageSeconds: Double) throws {
            try Data("partial ciphertext".utf8).write(to: URL(fileURLWithPath: path))
            try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -ageSeconds)], ofItemAtPath: path)
        }
        let staleA = "\(directory)/.\(Self.fingerprint).age.\(UUID().uuidString).tmp"
        let staleB = "\(otherDirectory)/.\(other.publicKeySHA256).age.\(UUID().uuidString).tmp"
        let fresh = "\(directory)/.\(Self.fingerprint).age.\(UUID().uuidString).tmp"
        let lookalikes = ["\(directory)/.\(Self.fingerprint).age.not-a-uuid.tmp", "\(directory)/notes.tmp",
                          "\(scratch.url.path)/.\(Self.fingerprint).age.\(UUID().uuidString).tmp"]
        try file(staleA, ageSeconds: 3600)
        try file(staleB, ageSeconds: 700)
        try file(fresh, ageSeconds: 5)
        for path in lookalikes { try file(path, ageSeconds: 3600) }
        // Objects are never swept, however old.
        for object in [store.url(for: Self.key).path, store.url(for: other).path] {
            try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -86_400)], ofItemAtPath: object)
        }

        #expect(try await store.sweepStaleTemporaryFiles(olderThan: .seconds(600)) == 2)
        #expect(!FileManager.default.fileExists(atPath: staleA) && !FileManager.default.fileExists(atPath: staleB))
        #expect(FileManager.default.fileExists(atPath: fresh))
        for path in lookalikes { #expect(FileManager.default.fileExists(atPath: path), "\(path)") }
        #expect(try await store.get(Self.key, expectedSHA256: Age.sha256(Array("object".utf8))) == Array("object".utf8))
        #expect(try await store.get(other, expectedSHA256: Age.sha256(Array("other object".utf8))) == Array("other object".utf8))
        #expect(try await store.sweepStaleTemporaryFiles(olderThan: .seconds(600)) == 0)
        #expect(try await DirectoryEscrowStore(root: scratch.file("missing")).sweepStaleTemporaryFiles(olderThan: .zero) == 0)
    }

    /// The sweep's name rule is the one put uses.
    @Test func temporaryNameRuleMatchesWhatPutWrites() {
        #expect(DirectoryEscrowStore.isTemporaryName(".\(Self.fingerprint).age.\(UUID().uuidString).tmp"))
        #expect(!DirectoryEscrowStore.isTemporaryName("\(Self.fingerprint).age"))
        #expect(!DirectoryEscrowStore.isTemporaryName(".\(Self.fingerprint).age.\(UUID().uuidString).tmp2"))
    }

    @Test func storeURINamesTheAbsoluteDirectory() throws {
        let scratch = try ScratchDirectory(label: "escrow")
        let store = DirectoryEscrowStore(root: scratch.file("escrow"))
        #expect(store.storeURI == "file://" + scratch.file("escrow").standardizedFileURL.path)
        #expect(store.storeURI.hasPrefix("file:///"))
        let relative = DirectoryEscrowStore(root: URL(fileURLWithPath: "relative/escrow"))
        #expect(relative.storeURI == "file://" + FileManager.default.currentDirectoryPath + "/relative/escrow")
    }

    @Test(arguments: KeyAlgorithm.allCases)
    func sealedBackupDecryptsWithKeylineAndAge(algorithm: KeyAlgorithm) async throws {
        let backup = try EscrowBackupTests.backup(algorithm)
        let rma = X25519Identity.generate()
        let officer = X25519Identity.generate()
        let sealed = try backup.seal(to: [rma.recipient, officer.recipient])
        #expect(sealed.objectKey == backup.objectKey)
        #expect(sealed.publicKeySHA256 == backup.publicKeySHA256)
        #expect(sealed.sha256 == Age.sha256(sealed.ciphertext))
        #expect(sealed.ciphertext.starts(with: Array("age-encryption.org/v1\n".utf8)))
        for identity in [rma, officer] {
            let restored = try EscrowBackup.decrypt(sealed.ciphertext, identities: [identity])
            #expect(restored.privateKey.der == backup.privateKey.der)
            #expect(restored.metadata == backup.metadata)
        }
        #expect(!Data(sealed.ciphertext).contains(Data(backup.privateKey.der.prefix(32))))

        let age = try ExternalTool("age")
        let scratch = try ScratchDirectory(label: "escrow")
        try rma.identityFile().write(to: scratch.file("identity.txt"), atomically: true, encoding: .utf8)
        let result = try await age.run(["-d", "-i", scratch.file("identity.txt").path], stdin: sealed.ciphertext)
        #expect(result.status == 0, "age -d failed: \(result.stderr)")
        #expect(try EscrowBackup.decode(result.stdoutBytes).privateKey.der == backup.privateKey.der)

        // Sealing twice gives other ciphertext (age is randomized): why adopt checks a recorded hash.
        #expect(try backup.seal(to: [rma.recipient]).sha256 != sealed.sha256)
    }

    @Test func errorsClassifyAsThePolicySays() {
        #expect(EscrowStoreError.io(operation: "write", path: "/s", errno: ENOSPC).failureClass == .needsOperator)
        #expect(EscrowStoreError.io(operation: "create", path: "/s", errno: EACCES).failureClass == .needsOperator)
        #expect(EscrowStoreError.io(operation: "fsync", path: "/s", errno: EIO).failureClass == .needsOperator)
        #expect(EscrowStoreError.objectExists(Self.key, storedSHA256: "a", newSHA256: "b").failureClass == .badDevice)
        #expect(EscrowStoreError.notFound(Self.key).failureClass == .badDevice)
        #expect(EscrowStoreError.invalidKey("x").failureClass == .badInput)
        #expect(AgeError.invalidRecipient("age1x", reason: "bad").failureClass == .badInput)
        #expect(AgeError.identityAsRecipient(line: 1).failureClass == .badInput)
        #expect(AgeError.noIdentityMatched(stanzaTypes: ["X25519"]).failureClass == .badInput)
        #expect(AgeError.truncated(.header).failureClass == .badInput)
        #expect(AgeError.io(operation: "read", path: "f", errno: EIO).failureClass == .needsOperator)
        #expect(EscrowBackupError.malformedDocument("x").failureClass == .badInput)
        // Through `any Error`, as the runner sees them.
        let errors: [any Error] = [EscrowStoreError.io(operation: "write", path: "/s", errno: ENOSPC), AgeError.noRecipients,
                                   EscrowBackupError.missingField("job")]
        #expect(errors.map(\.failureClass) == [.needsOperator, .badInput, .badInput])
    }

    /// A store directory the station cannot write: the put fails as needing an operator.
    @Test func unwritableStoreNeedsAnOperator() async throws {
        guard geteuid() != 0 else { return }  // root ignores permissions
        let scratch = try ScratchDirectory(label: "escrow")
        try FileManager.default.createDirectory(at: scratch.file("ro"), withIntermediateDirectories: true)
        chmod(scratch.file("ro").path, 0o500)
        defer { chmod(scratch.file("ro").path, 0o700) }
        let store = DirectoryEscrowStore(root: scratch.file("ro"))
        let error = await #expect(throws: EscrowStoreError.self) { try await store.put([1], at: Self.key) }
        #expect(error?.failureClass == .needsOperator)
    }
}
