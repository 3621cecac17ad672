import Foundation
import Testing
import TestSupport
@testable import Escrow

/// The station check's write-once probe on a directory store (create-exclusive).
@Suite struct DirectoryWriteProbeTests {
    @Test func theSecondCreateIsRefusedTheProbeIsPrivateAndListingsSkipIt() async throws {
        let scratch = try ScratchDirectory(label: "probe")
        let root = scratch.file("store")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        let store = DirectoryEscrowStore(root: root)
        let name = StoreWriteProbe.name(station: "line-3")
        #expect(try await store.probeWriteOnce(name: name) == .secondWriteRefused)
        let path = root.path + "/" + StoreWriteProbe.folder + "/" + name
        #expect(FileManager.default.contents(atPath: path) == Data(StoreWriteProbe.contents(name: name)))
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        // A second probe gets its own name; neither is an object an audit lists.
        #expect(try await store.probeWriteOnce(name: StoreWriteProbe.name(station: "line-3")) == .secondWriteRefused)
        var listed: [String] = []
        for try await page in store.objectPages(under: nil) { listed += page }
        #expect(listed.isEmpty, "\(listed)")
    }

    @Test func aProbeFolderThatIsNotAFolderFailsTheProbe() async throws {
        let scratch = try ScratchDirectory(label: "probe")
        let root = scratch.file("store")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        try Data("x".utf8).write(to: root.appendingPathComponent(StoreWriteProbe.folder))
        await #expect(throws: EscrowStoreError.self) {
            _ = try await DirectoryEscrowStore(root: root).probeWriteOnce(name: StoreWriteProbe.name(station: "s"))
        }
    }
}
