import DeviceKeys
import Foundation
import Testing
import TestSupport
@testable import Escrow
@testable import Age

@Suite struct DirectoryEscrowStoreTests {
    static let key = try! EscrowObjectKey(product: "12345", deviceID: "e00fce68a1b2c3d4e5f60718",
                                          publicKeySHA256: String(repeating: "ab", count: 32))

    static func mode(_ path: String) throws -> Int {
        (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.intValue ?? -1
    }

    @Test func putWritesOnceDurablyAndGetVerifies() async throws {
        let scratch = try ScratchDirectory(label: "escrow")
        let store = DirectoryEscrowStore(root: scratch.file("escrow"))
        let bytes = Array("ciphertext".utf8)
        let digest = try await store.put(bytes, at: Self.key)
        #expect(digest == Age.sha256(bytes))
        #expect(digest == "305531dcc50ebca31cf1d5b31e9fc76ed51f66b3b6dd5a030c6539ae6532f979") // sha256sum of "ciphertext"
        let path = scratch.file("escrow/12345/e00fce68a1b2c3d4e5f60718/\(String(repeating: "ab", count: 32)).age").path
        #expect(FileManager.default.contents(atPath: path) == Data(bytes))
        #expect(try Self.mode(path) == 0o400)  // read-only (DirectoryEscrowStore+Safety.swift)
        #expect(try Self.mode(scratch.file("escrow/12345").path) == 0o700)
        #expect(try FileManager.default.contentsOfDirectory(atPath: (path as NSString).deletingLastPathComponent).count == 1)
        #expect(try await store.get(Self.key, expectedSHA256: digest) == bytes)
        #expect(try await store.contains(Self.key))

        // Identical bytes again: success, same digest. Different bytes: refused, object unchanged.
        #expect(try await store.put(bytes, at: Self.key) == digest)
        await #expect(throws: EscrowStoreError.objectExists(Self.key, storedSHA256: digest, newSHA256: Age.sha256(Array("other".utf8)))) {
            try await store.put(Array("other".utf8), at: Self.key)
        }
        #expect(FileManager.default.contents(atPath: path) == Data(bytes))
    }

    /// A run that crashed after link(2) but before its directory fsync left the object in place;
    /// the resumed run finds identical bytes and must make them durable before reporting success.
    @Test func resumedPutOfIdenticalBytesSyncsTheExistingObject() async throws {
        let scratch = try ScratchDirectory(label: "escrow")
        let root = scratch.file("escrow").path
        let directory = "\(root)/12345/e00fce68a1b2c3d4e5f60718"
        let path = "\(directory)/\(String(repeating: "ab", count: 32)).age"
        let bytes = Array("ciphertext".utf8)
        try makePrivateFolders(directory)
        try Data(bytes).write(to: URL(fileURLWithPath: path))

        let synced = SyncLog()
        let store = DirectoryEscrowStore(root: scratch.file("escrow"), syncObserver: { synced.append($0) })
        #expect(try await store.put(bytes, at: Self.key) == Age.sha256(bytes))
        #expect(synced.paths == [path, directory, "\(root)/12345", root])

        // Different bytes are refused before anything else happens.
        synced.paths = []
        await #expect(throws: EscrowStoreError.self) { try await store.put(Array("other".utf8), at: Self.key) }
        #expect(synced.paths.isEmpty)
    }

    @Test func getDetectsMissingAndTamperedObjects() async throws {
        let scratch = try ScratchDirectory(label: "escrow")
        let store = DirectoryEscrowStore(root: scratch.url)
        await #expect(throws: EscrowStoreError.notFound(Self.key)) { try await store.get(Self.key, expectedSHA256: String(repeating: "0", count: 64)) }
        #expect(try await store.contains(Self.key) == false)
        let digest = try await store.put([1, 2, 3], at: Self.key)
        await #expect(throws: EscrowStoreError.self) { try await store.get(Self.key, expectedSHA256: String(repeating: "0", count: 64)) }
        let path = store.url(for: Self.key).path
        chmod(path, 0o600)
        try Data([1, 2, 4]).write(to: URL(fileURLWithPath: path))
        await #expect(throws: EscrowStoreError.checksumMismatch(Self.key, expected: digest, actual: Age.sha256([1, 2, 4]))) {
            try await store.get(Self.key, expectedSHA256: digest)
        }
    }

    @Test func concurrentWritersNeverOverwriteEachOther() async throws {
        let scratch = try ScratchDirectory(label: "escrow")
        let store = DirectoryEscrowStore(root: scratch.url)
        let results = await withTaskGroup(of: (Int, Bool).self) { group in
            for writer in 0..<16 {
                group.addTask {
                    // Writers 0-7 race with identical bytes, 8-15 each with their own.
                    let bytes = writer < 8 ? [UInt8](repeating: 9, count: 1000) : [UInt8](repeating: UInt8(100 + writer), count: 1000)
                    return (writer, (try? await store.put(bytes, at: Self.key)) != nil)
                }
            }
            return await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
        }
        let stored = try #require(FileManager.default.contents(atPath: store.url(for: Self.key).path))
        let winners = results.filter(\.value).map(\.key).sorted()
        if stored == Data(repeating: 9, count: 1000) {
            #expect(winners == Array(0..<8))
        } else {
            #expect(winners.count == 1 && stored == Data(repeating: UInt8(100 + winners[0]), count: 1000))
        }
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: store.url(for: Self.key).deletingLastPathComponent().path)
        #expect(leftovers.count == 1)
    }

    @Test func keysAreCheckedBeforeTouchingTheFileSystem() {
        let fingerprint = String(repeating: "0", count: 64)
        for product in ["", "..", ".hidden", "a/b", String(repeating: "x", count: 65)] {
            #expect(throws: EscrowStoreError.self) { try EscrowObjectKey(product: product, deviceID: "e00fce68a1b2c3d4e5f60718", publicKeySHA256: fingerprint) }
        }
        #expect(throws: EscrowStoreError.self) { try EscrowObjectKey(product: "p", deviceID: "E00FCE68A1B2C3D4E5F60718", publicKeySHA256: fingerprint) }
        #expect(throws: EscrowStoreError.self) { try EscrowObjectKey(product: "p", deviceID: "e00fce68a1b2c3d4e5f60718", publicKeySHA256: "00") }
    }

    /// Only ciphertext reaches the store: no file under the root holds the key or the document.
    @Test func plaintextNeverTouchesTheStore() async throws {
        let scratch = try ScratchDirectory(label: "escrow")
        let store = DirectoryEscrowStore(root: scratch.url)
        let backup = try EscrowBackupTests.backup(.rsa)
        let identity = X25519Identity.generate()
        let digest = try await store.put(try backup.encrypt(to: [identity.recipient]), at: backup.objectKey)
        let secrets = [Data(backup.privateKey.der.prefix(64)), Data(Data(backup.privateKey.der).base64EncodedString().prefix(64).utf8), Data("private_key_der".utf8)]
        let files = FileManager.default.enumerator(atPath: scratch.url.path)?.compactMap { $0 as? String } ?? []
        for file in files {
            guard let contents = FileManager.default.contents(atPath: scratch.file(file).path) else { continue }
            for secret in secrets { #expect(contents.range(of: secret) == nil, "\(file) holds plaintext") }
        }
        let restored = try EscrowBackup.decrypt(try await store.get(backup.objectKey, expectedSHA256: digest), identities: [identity])
        #expect(restored.privateKey.der == backup.privateKey.der)
    }
}

/// Paths the store reported fsynced, in order.
final class SyncLog: @unchecked Sendable {
    private let lock = NSLock()
    private var recorded: [String] = []

    var paths: [String] {
        get { lock.withLock { recorded } }
        set { lock.withLock { recorded = newValue } }
    }

    func append(_ path: String) { lock.withLock { recorded.append(path) } }
}
