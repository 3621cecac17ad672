import FailurePolicy
import Foundation
import Testing
import TestSupport
@testable import Escrow
@testable import Age

/// The directory store under a careless operator (issue 12): symlinks and group/world-writable
/// folders where the store's folders should be are refused with a message that says what to fix,
/// and nothing is written through them; the root is marked and objects are read-only.
@Suite struct DirectoryEscrowStoreSafetyTests {
    static let key = DirectoryEscrowStoreTests.key
    static let bytes = Array("ciphertext".utf8)

    /// Expects `work` to throw `.unsafeStore` naming `path`, and returns the message.
    @discardableResult
    static func expectUnsafe(_ path: String, _ work: () async throws -> Void) async -> String {
        do {
            try await work()
            Issue.record("\(path): not refused")
            return ""
        } catch let error as EscrowStoreError {
            guard case .unsafeStore(let named, _) = error else {
                Issue.record("\(path): \(error), not unsafeStore")
                return ""
            }
            #expect(named == path)
            #expect(error.failureClass == .needsOperator)
            return error.description
        } catch {
            Issue.record("\(path): \(error)")
            return ""
        }
    }

    /// Every regular file below `folder`, relative (the marker left out).
    static func files(under folder: URL) -> [String] {
        (FileManager.default.enumerator(atPath: folder.path)?.compactMap { $0 as? String } ?? [])
            .filter { name in
                var isDirectory: ObjCBool = false
                return FileManager.default.fileExists(atPath: folder.appendingPathComponent(name).path, isDirectory: &isDirectory)
                    && !isDirectory.boolValue && !name.hasSuffix(DirectoryEscrowStore.markerName)
            }
    }

    @Test("a symlink at the root, STORE/<product> or STORE/<product>/<device-id> is refused; nothing lands outside")
    func symlinksAreRefused() async throws {
        let scratch = try ScratchDirectory(label: "escrow-safety")
        let outside = scratch.file("outside")
        try FileManager.default.createDirectory(at: outside, withIntermediateDirectories: true)
        let levels = ["", "/\(Self.key.product)", "/\(Self.key.product)/\(Self.key.deviceID)"]
        for (index, level) in levels.enumerated() {
            let root = scratch.file("store-\(index)")
            let link = root.path + level
            try makePrivateFolders((link as NSString).deletingLastPathComponent)
            try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: outside.path)
            let store = DirectoryEscrowStore(root: root)
            let message = await Self.expectUnsafe(link) { _ = try await store.put(Self.bytes, at: Self.key) }
            #expect(message.contains("symbolic link") && message.contains(outside.path), "\(message)")
            await Self.expectUnsafe(link) { _ = try await store.get(Self.key, expectedSHA256: Age.sha256(Self.bytes)) }
            await Self.expectUnsafe(link) { _ = try await store.adopt(Self.key, expectedSHA256: Age.sha256(Self.bytes)) }
            #expect(Self.files(under: outside).isEmpty, "level \(index): \(Self.files(under: outside))")
            // Nothing was created below the link either (no product or device folder made through it).
            #expect(try FileManager.default.contentsOfDirectory(atPath: outside.path).filter { $0 != DirectoryEscrowStore.markerName }.isEmpty)
        }
        // The root alone, before any device is touched (what `keyline provision` checks).
        #expect(throws: EscrowStoreError.self) { try DirectoryEscrowStore(root: scratch.file("store-0")).checkRootIsSafe() }
        try DirectoryEscrowStore(root: scratch.file("store-1")).checkRootIsSafe()
        try DirectoryEscrowStore(root: scratch.file("does-not-exist-yet")).checkRootIsSafe()
    }

    @Test("existing group- or world-writable store folders are refused, with the chmod that fixes them")
    func writableFoldersAreRefused() async throws {
        let scratch = try ScratchDirectory(label: "escrow-safety")
        let levels = ["", "/\(Self.key.product)", "/\(Self.key.product)/\(Self.key.deviceID)"]
        for (index, level) in levels.enumerated() {
            for mode: mode_t in [0o777, 0o770, 0o702] {
                let root = scratch.file("store-\(index)-\(String(mode, radix: 8))")
                let folder = root.path + level
                try makePrivateFolders(folder)
                chmod(folder, mode)
                let store = DirectoryEscrowStore(root: root)
                let message = await Self.expectUnsafe(folder) { _ = try await store.put(Self.bytes, at: Self.key) }
                #expect(message.contains("chmod go-w '\(folder)'"), "\(message)")
                #expect(Self.files(under: root).isEmpty)
                // Fixed as the message says, the same put goes through.
                chmod(folder, mode & ~0o022)
                #expect(try await store.put(Self.bytes, at: Self.key) == Age.sha256(Self.bytes))
            }
        }
    }

    @Test("a file where a store folder should be is refused")
    func fileInPlaceOfAFolder() async throws {
        let scratch = try ScratchDirectory(label: "escrow-safety")
        let root = scratch.file("store")
        try makePrivateFolders(root.path)
        try Data("x".utf8).write(to: root.appendingPathComponent(Self.key.product))
        let store = DirectoryEscrowStore(root: root)
        let message = await Self.expectUnsafe(root.path + "/" + Self.key.product) { _ = try await store.put(Self.bytes, at: Self.key) }
        #expect(message.contains("is not a folder"))
    }

    @Test("the store marks its root, audit listings skip the marker, objects are read-only, and paths inside a store are recognised")
    func markerAndReadOnlyObjects() async throws {
        let scratch = try ScratchDirectory(label: "escrow-safety")
        let root = scratch.file("store")
        let store = DirectoryEscrowStore(root: root)
        _ = try await store.put(Self.bytes, at: Self.key)
        let marker = root.appendingPathComponent(DirectoryEscrowStore.markerName).path
        #expect(FileManager.default.fileExists(atPath: marker))
        let objectPath = store.url(for: Self.key).path
        #expect(try DirectoryEscrowStoreTests.mode(objectPath) == 0o400)
        #expect(try store.objectWalk().next(100) == [Self.key.path])

        // Any path at or below the root, existing or not, through a symlink too, belongs to the store.
        let real = realpath(root.path, nil).map { pointer in
            defer { free(pointer) }
            return String(cString: pointer)
        }
        for path in [objectPath, root.path + "/new.age", root.path + "/12345/new-folder/x.bin"] {
            #expect(DirectoryEscrowStore.enclosingStore(of: path) == real, "\(path)")
        }
        let link = scratch.file("link-to-device-folder").path
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: (objectPath as NSString).deletingLastPathComponent)
        #expect(DirectoryEscrowStore.enclosingStore(of: link + "/" + (objectPath as NSString).lastPathComponent) == real)
        #expect(DirectoryEscrowStore.enclosingStore(of: scratch.file("elsewhere.age").path) == nil)

        // A store written before markers existed: an object-shaped path is still recognised.
        let legacy = scratch.file("legacy/\(Self.key.path)").path
        #expect(DirectoryEscrowStore.enclosingStore(of: legacy) == scratch.file("legacy").path)

        // A marker deleted by hand is written again by the next put.
        unlink(marker)
        #expect(try await store.put(Self.bytes, at: Self.key) == Age.sha256(Self.bytes))
        #expect(FileManager.default.fileExists(atPath: marker))
    }
}
