import Foundation

/// A fresh directory under the system temporary directory for one test: removed by `remove()`
/// or, at the latest, when the last reference goes away.
public final class ScratchDirectory: Sendable {
    public let url: URL

    /// `label` names the directory (`keyline-<label>-<UUID>`), so a leftover says which tests made it.
    public init(label: String = "test") throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("keyline-\(label)-\(UUID().uuidString)")
        // 0700 whatever the umask: tests use scratch folders as escrow store roots, which refuse group write.
        try makePrivateFolders(url.path)
    }

    public func file(_ name: String) -> URL { url.appendingPathComponent(name) }

    public func path(_ name: String) -> String { file(name).path }

    public func write(_ name: String, _ bytes: [UInt8]) throws {
        try Data(bytes).write(to: file(name))
    }

    public func read(_ name: String) throws -> [UInt8] {
        Array(try Data(contentsOf: file(name)))
    }

    /// The POSIX permission bits of `name`, or -1 when they cannot be read.
    public func mode(_ name: String) throws -> Int {
        (try FileManager.default.attributesOfItem(atPath: path(name))[.posixPermissions] as? Int) ?? -1
    }

    public func remove() { try? FileManager.default.removeItem(at: url) }

    deinit { remove() }
}
