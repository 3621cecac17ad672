import LocalFiles
import DeviceKeys
import Dispatch
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An `EscrowStore` in a local (or mounted) directory: `<root>/<product>/<device-id>/<spki-sha256>.age`.
///
/// Each put writes a temporary file in the object's directory (ciphertext only, mode 0400),
/// fsyncs it, publishes it with link(2) — a rename that fails instead of replacing an existing
/// name, so two writers can never overwrite each other — and fsyncs the directory, so the object
/// survives a power cut once `put` returns. New directories are fsynced into their parents too.
/// A put that finds identical bytes already stored (a resumed run, or a concurrent writer) fsyncs
/// that object and the directories above it before returning: the run that linked it may have
/// crashed before its own directory fsync. `adopt` does the same for an object whose bytes match
/// a recorded hash (a redone escrow cannot reproduce age's random output), and
/// `sweepStaleTemporaryFiles` removes what a killed put left (`.<spki-sha256>.age.<UUID>.tmp`).
///
/// Symlinked or group/world-writable store folders are refused, the root carries a marker file,
/// and objects are read-only: see DirectoryEscrowStore+Safety.swift.
///
/// All file I/O (fsync in particular can block for seconds) runs on a dedicated dispatch queue,
/// never on Swift's cooperative pool.
public struct DirectoryEscrowStore: EscrowStore {
    public let root: URL
    private let queue: DispatchQueue
    private let sync: Sync

    public init(root: URL) {
        self.init(root: root, syncObserver: nil)
    }

    /// `syncObserver` is told the path of every file and directory after it was fsynced (tests
    /// check the durability steps with it; a crash between them cannot be staged in-process).
    init(root: URL, syncObserver: (@Sendable (String) -> Void)?) {
        self.root = root.standardizedFileURL
        queue = DispatchQueue(label: "keyline.escrow.directory-store", qos: .utility, attributes: .concurrent)
        sync = Sync(observer: syncObserver)
    }

    /// fsync(2), retried on EINTR, then reported to the observer.
    struct Sync: Sendable {
        let observer: (@Sendable (String) -> Void)?

        func file(_ fd: Int32, path: String) throws {
            while fsync(fd) != 0 {
                if errno == EINTR { continue }
                throw EscrowStoreError.io(operation: "fsync", path: path, errno: errno)
            }
            observer?(path)
        }

        func directory(_ path: String) throws {
            let fd = open(path.isEmpty ? "." : path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard fd >= 0 else { throw EscrowStoreError.io(operation: "open directory", path: path, errno: errno) }
            defer { close(fd) }
            while fsync(fd) != 0 {
                if errno == EINTR { continue }
                throw EscrowStoreError.io(operation: "fsync directory", path: path, errno: errno)
            }
            observer?(path)
        }

        /// The existing file at `path` and every directory entry leading to it from `root`.
        /// A run that crashed after link(2) but before its directory fsync left an object that a
        /// power cut can still lose; the resumed run must not report it stored until this is done.
        func existing(_ path: String, root: String, components: [String]) throws {
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw EscrowStoreError.io(operation: "open", path: path, errno: errno) }
            defer { close(fd) }
            try file(fd, path: path)
            var directories = [root]
            for component in components { directories.append(directories.last! + "/" + component) }
            for directory in directories.reversed() { try self.directory(directory) }
        }
    }

    public func url(for key: EscrowObjectKey) -> URL { root.appendingPathComponent(key.path) }

    public func put(_ ciphertext: [UInt8], at key: EscrowObjectKey) async throws -> String {
        let root = root.path
        let sync = sync
        return try await offPool(on: queue) { try Self.putBlocking(ciphertext, key: key, root: root, sync: sync) }
    }

    public func get(_ key: EscrowObjectKey, expectedSHA256: String) async throws -> [UInt8] {
        let path = url(for: key).path
        let root = root.path
        let bytes = try await offPool(on: queue) { () throws -> [UInt8]? in
            try Self.checkFolders(root: root, components: [key.product, key.deviceID])
            return try Self.readIfExists(path)
        }
        guard let bytes else { throw EscrowStoreError.notFound(key) }
        let actual = SHA256Digest.hex(bytes)
        guard actual == expectedSHA256.lowercased() else {
            throw EscrowStoreError.checksumMismatch(key, expected: expectedSHA256.lowercased(), actual: actual)
        }
        return bytes
    }

    public func contains(_ key: EscrowObjectKey) async throws -> Bool {
        let path = url(for: key).path
        let root = root.path
        return try await offPool(on: queue) {
            try Self.checkFolders(root: root, components: [key.product, key.deviceID])
            var info = stat()
            if stat(path, &info) == 0 { return true }
            if errno == ENOENT { return false }
            throw EscrowStoreError.io(operation: "stat", path: path, errno: errno)
        }
    }

    /// The object at `key` counts as written when it has exactly `expectedSHA256`; it is fsynced
    /// with the directories above it first, as the identical-bytes path of `put` does, since the
    /// run that linked it may have died before its directory fsync.
    public func adopt(_ key: EscrowObjectKey, expectedSHA256: String) async throws -> Bool {
        let root = root.path
        let sync = sync
        let expected = expectedSHA256.lowercased()
        return try await offPool(on: queue) {
            let components = [key.product, key.deviceID]
            let path = "\(root)/\(key.path)"
            try Self.checkFolders(root: root, components: components)
            guard let existing = try Self.readIfExists(path) else { return false }
            let actual = SHA256Digest.hex(existing)
            guard actual == expected else { throw EscrowStoreError.checksumMismatch(key, expected: expected, actual: actual) }
            try sync.existing(path, root: root, components: components)
            return true
        }
    }

    public func sweepStaleTemporaryFiles(olderThan age: Duration) async throws -> Int {
        let root = root.path
        let (seconds, attoseconds) = age.components
        let maximumAge = Double(seconds) + Double(attoseconds) / 1e18
        return try await offPool(on: queue) { try Self.sweepBlocking(root: root, olderThan: maximumAge, now: Date().timeIntervalSince1970) }
    }

    public var storeURI: String { "file://" + root.path }

    // MARK: - Blocking file system work (dispatch queue only)

    static func putBlocking(_ ciphertext: [UInt8], key: EscrowObjectKey, root: String, sync: Sync) throws -> String {
        let digest = SHA256Digest.hex(ciphertext)
        let components = [key.product, key.deviceID]
        let directory = "\(root)/\(key.product)/\(key.deviceID)"
        let final = "\(directory)/\(key.fileName)"
        try makeDirectories(root: root, components: components, sync: sync)

        if let existing = try readIfExists(final) {
            let stored = try idempotent(existing: existing, key: key, newSHA256: digest)
            try sync.existing(final, root: root, components: components)
            return stored
        }

        let temporary = "\(directory)/.\(key.publicKeySHA256).age.\(UUID().uuidString).tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, objectMode)
        guard fd >= 0 else { throw EscrowStoreError.io(operation: "create", path: temporary, errno: errno) }
        var published = false
        defer { if !published { unlink(temporary) } }
        do {
            defer { close(fd) }
            try writeAll(fd, ciphertext, path: temporary)
            try sync.file(fd, path: temporary)
        }
        if link(temporary, final) != 0 {
            let code = errno
            guard code == EEXIST, let existing = try readIfExists(final) else {
                throw EscrowStoreError.io(operation: "link", path: final, errno: code)
            }
            // Another writer published first; same bytes is still success once it is durable
            // (that writer may not have reached its own directory fsync yet).
            let stored = try idempotent(existing: existing, key: key, newSHA256: digest)
            try sync.existing(final, root: root, components: components)
            return stored
        }
        published = true
        unlink(temporary)
        try sync.directory(directory)
        return digest
    }

    /// The name `putBlocking` gives its temporary file: `.<spki-sha256>.age.<UUID>.tmp`. Only
    /// names of exactly this shape are ever swept, so an object (never hidden) cannot match.
    static func isTemporaryName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard bytes.count == 1 + 64 + 5 + 36 + 4, bytes.first == UInt8(ascii: "."),
              EscrowObjectKey.isSHA256Hex(String(decoding: bytes[1..<65], as: UTF8.self)),
              bytes[65..<70].elementsEqual(".age.".utf8), bytes.suffix(4).elementsEqual(".tmp".utf8) else { return false }
        return UUID(uuidString: String(decoding: bytes[70..<106], as: UTF8.self)) != nil
    }

    /// Walks `<root>/<product>/<device-id>/` (the only places puts write) and unlinks stale
    /// temporary files. Entries are checked with lstat: a symlink or directory is never removed.
    static func sweepBlocking(root: String, olderThan maximumAge: Double, now: Double) throws -> Int {
        var removed = 0
        for product in try listDirectory(root) where EscrowObjectKey.isPathSegment(product) {
            for device in try listDirectory("\(root)/\(product)") where EscrowObjectKey.isDeviceID(device) {
                let directory = "\(root)/\(product)/\(device)"
                for name in try listDirectory(directory) where isTemporaryName(name) {
                    let path = "\(directory)/\(name)"
                    var info = stat()
                    guard lstat(path, &info) == 0 else {
                        if errno == ENOENT { continue }  // its put finished or failed meanwhile
                        throw EscrowStoreError.io(operation: "stat", path: path, errno: errno)
                    }
                    guard info.st_mode & S_IFMT == S_IFREG, now - modificationTime(info) > maximumAge else { continue }
                    if unlink(path) == 0 {
                        removed += 1
                    } else if errno != ENOENT {
                        throw EscrowStoreError.io(operation: "unlink", path: path, errno: errno)
                    }
                }
            }
        }
        return removed
    }

    static func modificationTime(_ info: stat) -> Double {
        #if canImport(Darwin)
        Double(info.st_mtimespec.tv_sec) + Double(info.st_mtimespec.tv_nsec) / 1e9
        #else
        Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9
        #endif
    }

    /// Entry names of a directory (without "." and ".."); a missing directory has none.
    static func listDirectory(_ path: String) throws -> [String] {
        guard let handle = opendir(path) else {
            if errno == ENOENT || errno == ENOTDIR { return [] }
            throw EscrowStoreError.io(operation: "open directory", path: path, errno: errno)
        }
        defer { closedir(handle) }
        var names: [String] = []
        while true {
            errno = 0
            guard let entry = readdir(handle) else {
                if errno != 0 { throw EscrowStoreError.io(operation: "read directory", path: path, errno: errno) }
                return names
            }
            let name = withUnsafePointer(to: &entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: Int(NAME_MAX) + 1) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
    }

    private static func idempotent(existing: [UInt8], key: EscrowObjectKey, newSHA256: String) throws -> String {
        let stored = SHA256Digest.hex(existing)
        guard stored == newSHA256 else {
            throw EscrowStoreError.objectExists(key, storedSHA256: stored, newSHA256: newSHA256)
        }
        return stored
    }

    /// Creates missing directories (mode 0700) under `root`, fsyncing each parent whose entries
    /// changed, and checks each level before going below it (a symlinked product folder must be
    /// refused before a device folder is made through it); marks the root as a store.
    static func makeDirectories(root: String, components: [String], sync: Sync) throws {
        var path = root
        if mkdir(root, 0o700) == 0 {
            try sync.directory((root as NSString).deletingLastPathComponent)
        } else if errno != EEXIST {
            throw EscrowStoreError.io(operation: "mkdir", path: root, errno: errno)
        }
        try checkFolder(root)
        try ensureMarker(root: root)
        for component in components {
            let parent = path
            path += "/\(component)"
            if mkdir(path, 0o700) == 0 {
                try sync.directory(parent)
            } else if errno != EEXIST {
                throw EscrowStoreError.io(operation: "mkdir", path: path, errno: errno)
            }
            try checkFolder(path)
        }
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { throw EscrowStoreError.io(operation: "write", path: path, errno: errno) }
            offset += written
        }
    }

    static func readIfExists(_ path: String) throws -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { return nil }
            throw EscrowStoreError.io(operation: "open", path: path, errno: errno)
        }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { throw EscrowStoreError.io(operation: "read", path: path, errno: errno) }
            if count == 0 { return bytes }
            bytes += buffer[..<count]
        }
    }
}
