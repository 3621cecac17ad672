import Crypto
import Foundation

/// What an audit needs from a directory store: every object in a stable order, and the SHA-256 of
/// an object's bytes as they are now.
extension DirectoryEscrowStore {
    /// A walk of the store's files in byte order of their paths relative to the root (the order of
    /// `ORDER BY object_key COLLATE "C"`), `under` one top-level folder (a product) or all.
    /// Temporary files of puts in progress are left out; everything else is listed, so files
    /// that do not look like objects show up as orphans too. Blocking: call it off the pool.
    public func objectWalk(under product: String? = nil) -> DirectoryObjectWalk {
        DirectoryObjectWalk(root: root.path, start: product)
    }

    /// The SHA-256 (lowercase hex) of the file at `relativePath`, or nil when there is none.
    /// Blocking: call it off the pool.
    public func sha256(ofObjectAt relativePath: String) throws(EscrowStoreError) -> String? {
        let path = root.path + "/" + relativePath
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT || errno == ENOTDIR { return nil }
            throw .io(operation: "open", path: path, errno: errno)
        }
        defer { close(fd) }
        var hasher = SHA256()
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw .io(operation: "read", path: path, errno: errno)
            }
            if count == 0 { break }
            hasher.update(data: buffer[0..<count])
        }
        return lowercaseHex(hasher.finalize())
    }
}

/// A depth-first walk that holds one sorted listing per open folder (not the whole tree).
/// Sendable so it can be handed to a worker queue; use it from one thread at a time.
public final class DirectoryObjectWalk: @unchecked Sendable {
    private let root: String
    /// Open folders: relative path and the entries still to visit (reversed, so the next is last).
    private var stack: [(path: String, entries: [(name: String, isDirectory: Bool)])] = []
    private var started = false
    private let start: String?

    init(root: String, start: String?) {
        self.root = root
        self.start = start
    }

    /// Up to `limit` further relative paths, in byte order; empty at the end.
    public func next(_ limit: Int) throws(EscrowStoreError) -> [String] {
        if !started {
            started = true
            if let start {
                var info = stat()
                if lstat(root + "/" + start, &info) == 0, info.st_mode & S_IFMT == S_IFDIR {
                    stack.append((start, try Self.sortedEntries(root + "/" + start)))
                }
            } else {
                stack.append(("", try Self.sortedEntries(root, isRoot: true)))
            }
        }
        var paths: [String] = []
        while paths.count < limit, !stack.isEmpty {
            guard let entry = stack[stack.count - 1].entries.popLast() else {
                stack.removeLast()
                continue
            }
            let parent = stack[stack.count - 1].path
            let path = parent.isEmpty ? entry.name : parent + "/" + entry.name
            if entry.isDirectory {
                stack.append((path, try Self.sortedEntries(root + "/" + path)))
            } else {
                paths.append(path)
            }
        }
        return paths
    }

    /// A folder's entries sorted so that the full paths come out in byte order: a folder sorts as
    /// its name followed by "/" (so "a-b" comes before "a/…", as '-' < '/'), in reverse.
    static func sortedEntries(_ path: String, isRoot: Bool = false) throws(EscrowStoreError) -> [(name: String, isDirectory: Bool)] {
        guard let handle = opendir(path) else {
            if errno == ENOENT || errno == ENOTDIR { return [] }
            throw .io(operation: "open directory", path: path, errno: errno)
        }
        defer { closedir(handle) }
        var entries: [(name: String, isDirectory: Bool, key: [UInt8])] = []
        while true {
            errno = 0
            guard let entry = readdir(handle) else {
                if errno != 0 { throw .io(operation: "read directory", path: path, errno: errno) }
                break
            }
            let name = withUnsafePointer(to: &entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: Int(NAME_MAX) + 1) { String(cString: $0) }
            }
            if name == "." || name == ".." || DirectoryEscrowStore.isTemporaryName(name) { continue }
            // The store's marker (DirectoryEscrowStore+Safety.swift) is not an object; only the root's.
            if name == DirectoryEscrowStore.markerName && isRoot { continue }
            var isDirectory = entry.pointee.d_type == UInt8(DT_DIR)
            if entry.pointee.d_type == UInt8(DT_UNKNOWN) {
                var info = stat()
                isDirectory = lstat(path + "/" + name, &info) == 0 && info.st_mode & S_IFMT == S_IFDIR
            }
            entries.append((name, isDirectory, Array(name.utf8) + (isDirectory ? [UInt8(ascii: "/")] : [])))
        }
        entries.sort { $1.key.lexicographicallyPrecedes($0.key) }
        return entries.map { ($0.name, $0.isDirectory) }
    }
}
