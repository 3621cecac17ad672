import LocalFiles
import Foundation
import DeviceKeys
import HexEncoding

/// What an audit needs from a directory store: every object in a stable order, and the SHA-256 of
/// an object's bytes as they are now. Files are read on Dispatch threads, all cores at once.
extension DirectoryEscrowStore {
    public var displayName: String { root.path }

    public func location(of key: EscrowObjectKey) -> String { url(for: key).path }

    public func sha256s(ofObjectsAt objectKeys: [String]) async -> [Result<String?, any Error>] {
        await parallelMap(objectKeys) { key in Result<String?, any Error> { try sha256(ofObjectAt: key) } }
    }

    public func contents(ofObjectsAt objectKeys: [String]) async -> [Result<[UInt8]?, any Error>] {
        await parallelMap(objectKeys) { key in Result<[UInt8]?, any Error> { try contents(ofObjectAt: key) } }
    }

    /// The walk below, 2,048 paths at a time, each batch read off the pool.
    public func objectPages(under product: String?) -> AsyncThrowingStream<[String], any Error> {
        let walk = objectWalk(under: product)
        return AsyncThrowingStream(unfolding: {
            let paths = try await offPool { try walk.next(2_048) }
            return paths.isEmpty ? nil : paths
        })
    }

    /// A walk of the store's files (paths relative to the root, in directory order), `under` one
    /// top-level folder (a product) or all. Temporary files of puts in progress are left out;
    /// everything else is listed, so files that do not look like objects show up as orphans too.
    /// Memory is one open directory per level, whatever the number of files. Blocking: call it
    /// off the pool.
    public func objectWalk(under product: String? = nil) -> DirectoryObjectWalk {
        DirectoryObjectWalk(root: root.path, start: product)
    }

    /// The bytes of the file at `relativePath`, or nil when there is none. Blocking: call it off the pool.
    public func contents(ofObjectAt relativePath: String) throws(EscrowStoreError) -> [UInt8]? {
        let path = root.path + "/" + relativePath
        guard let fd = try openObjectForAudit(relativePath) else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw .io(operation: "read", path: path, errno: errno)
            }
            if count == 0 { return bytes }
            bytes += buffer[0..<count]
        }
    }

    /// The SHA-256 (lowercase hex) of the file at `relativePath`, or nil when there is none.
    /// Blocking: call it off the pool.
    public func sha256(ofObjectAt relativePath: String) throws(EscrowStoreError) -> String? {
        let path = root.path + "/" + relativePath
        guard let fd = try openObjectForAudit(relativePath) else { return nil }
        defer { close(fd) }
        var hasher = SHA256Digest()
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw .io(operation: "read", path: path, errno: errno)
            }
            if count == 0 { break }
            buffer.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
        }
        return Hex.encode(hasher.finalize())
    }
}

extension DirectoryEscrowStore {
    /// Opens an object to audit it after the checks `put` makes (issue 21, item 16): the root and
    /// the folders down to the object are real folders nobody else can write, and the object is
    /// not a symlink; nil when it does not exist. An object reached through a link is not the
    /// store's, so it is refused rather than hashed.
    func openObjectForAudit(_ relativePath: String) throws(EscrowStoreError) -> Int32? {
        let components = relativePath.split(separator: "/").map(String.init)
        try Self.checkFolders(root: root.path, components: Array(components.dropLast()))
        let path = root.path + "/" + relativePath
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else {
            if errno == ENOENT || errno == ENOTDIR { return nil }
            if errno == ELOOP {
                throw .unsafeStore(path: path, problem: "is a symbolic link, not an object written by the store; remove it and restore the object from a backup of the store")
            }
            throw .io(operation: "open", path: path, errno: errno)
        }
        return fd
    }
}

/// A depth-first walk reading each folder as it goes (readdir, unsorted): it holds one open
/// directory per level, never a listing, so a store of millions of objects walks in constant
/// memory. Sendable so it can be handed to a worker queue; use it from one thread at a time.
public final class DirectoryObjectWalk: @unchecked Sendable {
    private let root: String
    /// Open folders, deepest last: the path relative to the root and its directory stream.
    private var stack: [(path: String, handle: OpaquePointer)] = []
    private var started = false
    private let start: String?

    init(root: String, start: String?) {
        self.root = root
        self.start = start
    }

    deinit {
        for level in stack { closedir(level.handle) }
    }

    /// Up to `limit` further relative paths; empty at the end.
    public func next(_ limit: Int) throws(EscrowStoreError) -> [String] {
        if !started {
            started = true
            if let start {
                var info = stat()
                if lstat(root + "/" + start, &info) == 0, info.st_mode & S_IFMT == S_IFDIR { try descend(into: start) }
            } else {
                try descend(into: "")
            }
        }
        var paths: [String] = []
        while paths.count < limit, let top = stack.last {
            let (parent, handle) = (top.path, top.handle)
            errno = 0
            guard let entry = readdir(handle) else {
                if errno != 0 { throw .io(operation: "read directory", path: root + "/" + parent, errno: errno) }
                closedir(handle)
                stack.removeLast()
                continue
            }
            let name = withUnsafePointer(to: &entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: Int(NAME_MAX) + 1) { String(cString: $0) }
            }
            if name == "." || name == ".." || DirectoryEscrowStore.isTemporaryName(name) { continue }
            // The store's marker (DirectoryEscrowStore+Safety.swift) is not an object; only the root's.
            if parent.isEmpty && name == DirectoryEscrowStore.markerName { continue }
            // Nor are the station check's probes (StoreWriteProbe.swift).
            if parent.isEmpty && name == StoreWriteProbe.folder { continue }
            let path = parent.isEmpty ? name : parent + "/" + name
            var isDirectory = entry.pointee.d_type == UInt8(DT_DIR)
            var isLink = entry.pointee.d_type == UInt8(DT_LNK)
            if entry.pointee.d_type == UInt8(DT_UNKNOWN) {
                var info = stat()
                let known = lstat(root + "/" + path, &info) == 0
                isDirectory = known && info.st_mode & S_IFMT == S_IFDIR
                isLink = known && info.st_mode & S_IFMT == S_IFLNK
            }
            // The checks `put` makes: a link in the store points outside it.
            if isLink { try DirectoryEscrowStore.checkFolder(root + "/" + path) }
            if isDirectory { try descend(into: path) } else { paths.append(path) }
        }
        return paths
    }

    private func descend(into path: String) throws(EscrowStoreError) {
        let full = path.isEmpty ? root : root + "/" + path
        // A symlink or a group/world-writable folder is refused, as `put` refuses it.
        guard try DirectoryEscrowStore.checkFolder(full) else { return }
        guard let handle = opendir(full) else {
            if errno == ENOENT || errno == ENOTDIR { return }
            throw .io(operation: "open directory", path: full, errno: errno)
        }
        stack.append((path, handle))
    }
}
