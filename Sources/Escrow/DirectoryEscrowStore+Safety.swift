import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What keeps a directory store a store under a careless operator (issue 12):
/// - the store root, `<root>/<product>` and `<root>/<product>/<device-id>` must be real folders,
///   never symlinks (one would send objects, and their write-once guarantee, outside the store)
///   and never group- or world-writable (anyone else who can write there can unlink or replace
///   an object, whatever keyline does);
/// - the root holds a marker file, `.keyline-escrow-store`, so every keyline command that writes
///   a file can tell it is inside a store and refuse (only the store writes there, and only new
///   objects);
/// - objects are created read-only (0400; see `objectMode`).
///
/// These are checks against mistakes (a `ln -s` or `chmod 777` by hand, `-o STORE/… --force`),
/// made with lstat(2) before each use: someone who can already write into the store's folders can
/// delete objects anyway, so a race against the check is not what they guard against.
extension DirectoryEscrowStore {
    /// The file that marks a folder as a keyline escrow store (in the root; skipped by audit listings).
    public static let markerName = ".keyline-escrow-store"

    /// Escrow objects are created 0400: owner-only like the 0600 the guide names (no one else can
    /// read a backup), and read-only, so the owner's own tools (`cp` over it, a shell `>`, an
    /// editor) fail with EACCES instead of rewriting an object in place; the issue asks for
    /// read-only objects, and nothing keyline does needs to write one after it is published.
    static let objectMode: mode_t = 0o400

    static let markerText = """
        This folder is a keyline escrow store. Each object (<product>/<device-id>/<spki-sha256>.age) is
        an age-encrypted device key backup, written once and never replaced; the registry records its
        SHA-256. keyline refuses to write any other file here. Do not edit, move or chmod anything.

        """

    /// Checks the store root as it is now (no folder is created): a symlink or a group/world-writable
    /// root is refused. What `keyline provision` runs before it touches a device. A missing root is fine.
    /// (One lstat: cheap enough to run where it is called.)
    public func checkRootIsSafe() throws(EscrowStoreError) {
        try Self.checkFolders(root: root.path, components: [])
    }

    /// lstat(2)s the root and then each of `components` below it, as far as they exist, and
    /// refuses a symlink, anything that is not a folder, or a group/world-writable folder.
    static func checkFolders(root: String, components: [String]) throws(EscrowStoreError) {
        var path = root
        if try !checkFolder(path) { return }
        for component in components {
            path += "/" + component
            if try !checkFolder(path) { return }
        }
    }

    /// Whether the folder at `path` exists (after checking it is safe); false when it does not.
    @discardableResult
    static func checkFolder(_ path: String) throws(EscrowStoreError) -> Bool {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            if errno == ENOENT { return false }
            throw .io(operation: "stat", path: path, errno: errno)
        }
        switch info.st_mode & S_IFMT {
        case S_IFDIR:
            break
        case S_IFLNK:
            let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: path)).map { " (to \($0))" } ?? ""
            throw .unsafeStore(path: path, problem: "is a symbolic link\(target); objects would be written outside the store. Replace it with a real folder (move the folder it points to here) or name the real folder as the store")
        default:
            throw .unsafeStore(path: path, problem: "is not a folder; move it out of the store")
        }
        if info.st_mode & (S_IWGRP | S_IWOTH) != 0 {
            let mode = String(info.st_mode & 0o7777, radix: 8)
            throw .unsafeStore(path: path, problem: "is writable by its group or by everyone (mode \(mode)), so others could delete or replace escrow objects. Run: chmod go-w '\(path)'")
        }
        return true
    }

    /// Creates the marker in `root` when it is missing. Not fsynced: a marker lost in a power cut
    /// is written again by the next put, and no object's durability depends on it.
    static func ensureMarker(root: String) throws {
        let path = root + "/" + markerName
        var info = stat()
        if lstat(path, &info) == 0 { return }
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o444)
        guard fd >= 0 else {
            if errno == EEXIST { return }  // another put made it meanwhile
            throw EscrowStoreError.io(operation: "create", path: path, errno: errno)
        }
        defer { close(fd) }
        try writeAll(fd, Array(markerText.utf8), path: path)
    }

    /// The escrow store a file at `path` would be inside, or nil: the nearest folder at or above
    /// the file's folder that holds the marker, or, for stores made before markers existed, the
    /// store root when `path` is shaped like an object (`<device-id>/<spki-sha256>.age`). Symlinks
    /// in the file's folder are resolved first, so a link into a store is caught too. For every
    /// command that writes a file: nothing but the store may write inside a store.
    public static func enclosingStore(of path: String) -> String? {
        let url = URL(fileURLWithPath: path).standardizedFileURL
        var folder = url.deletingLastPathComponent().path
        // The deepest existing folder, resolved (the file's own folder may not exist yet).
        var resolved: String?
        while resolved == nil {
            if let real = realpath(folder, nil) {
                resolved = String(cString: real)
                free(real)
            } else if folder == "/" || folder.isEmpty {
                return nil
            } else {
                folder = (folder as NSString).deletingLastPathComponent
            }
        }
        var current = resolved!
        while true {
            var info = stat()
            if lstat(current + "/" + markerName, &info) == 0 { return current }
            if current == "/" || current.isEmpty { break }
            current = (current as NSString).deletingLastPathComponent
        }
        let name = url.lastPathComponent
        let device = url.deletingLastPathComponent()
        if name.hasSuffix(".age"), EscrowObjectKey.isSHA256Hex(String(name.dropLast(4))),
           EscrowObjectKey.isDeviceID(device.lastPathComponent) {
            // <root>/<product>/<device-id>/<spki-sha256>.age: the root is two folders up.
            return device.deletingLastPathComponent().deletingLastPathComponent().path
        }
        return nil
    }
}
