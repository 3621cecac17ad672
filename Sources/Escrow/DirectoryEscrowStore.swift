import Dispatch
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An `EscrowStore` in a local (or mounted) directory: `<root>/<product>/<device-id>/<spki-sha256>.age`.
///
/// Each put writes a temporary file in the object's directory (ciphertext only, mode 0600),
/// fsyncs it, publishes it with link(2) — a rename that fails instead of replacing an existing
/// name, so two writers can never overwrite each other — and fsyncs the directory, so the object
/// survives a power cut once `put` returns. New directories are fsynced into their parents too.
/// A put that finds identical bytes already stored (a resumed run, or a concurrent writer) fsyncs
/// that object and the directories above it before returning: the run that linked it may have
/// crashed before its own directory fsync.
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
        return try await offPool { try Self.putBlocking(ciphertext, key: key, root: root, sync: sync) }
    }

    public func get(_ key: EscrowObjectKey, expectedSHA256: String) async throws -> [UInt8] {
        let path = url(for: key).path
        let bytes = try await offPool { () throws -> [UInt8]? in try Self.readIfExists(path) }
        guard let bytes else { throw EscrowStoreError.notFound(key) }
        let actual = sha256Hex(bytes)
        guard actual == expectedSHA256.lowercased() else {
            throw EscrowStoreError.checksumMismatch(key, expected: expectedSHA256.lowercased(), actual: actual)
        }
        return bytes
    }

    public func contains(_ key: EscrowObjectKey) async throws -> Bool {
        let path = url(for: key).path
        return try await offPool {
            var info = stat()
            if stat(path, &info) == 0 { return true }
            if errno == ENOENT { return false }
            throw EscrowStoreError.io(operation: "stat", path: path, errno: errno)
        }
    }

    private func offPool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try work() }) }
        }
    }

    // MARK: - Blocking file system work (dispatch queue only)

    static func putBlocking(_ ciphertext: [UInt8], key: EscrowObjectKey, root: String, sync: Sync) throws -> String {
        let digest = sha256Hex(ciphertext)
        let components = [key.product, key.deviceID]
        let directory = "\(root)/\(key.product)/\(key.deviceID)"
        let final = "\(directory)/\(key.publicKeySHA256).age"
        try makeDirectories(root: root, components: components, sync: sync)

        if let existing = try readIfExists(final) {
            let stored = try idempotent(existing: existing, key: key, newSHA256: digest)
            try sync.existing(final, root: root, components: components)
            return stored
        }

        let temporary = "\(directory)/.\(key.publicKeySHA256).age.\(UUID().uuidString).tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
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

    private static func idempotent(existing: [UInt8], key: EscrowObjectKey, newSHA256: String) throws -> String {
        let stored = sha256Hex(existing)
        guard stored == newSHA256 else {
            throw EscrowStoreError.objectExists(key, storedSHA256: stored, newSHA256: newSHA256)
        }
        return stored
    }

    /// Creates missing directories (mode 0700) under `root`, fsyncing each parent whose entries changed.
    static func makeDirectories(root: String, components: [String], sync: Sync) throws {
        var path = root
        if mkdir(root, 0o700) == 0 {
            try sync.directory((root as NSString).deletingLastPathComponent)
        } else if errno != EEXIST {
            throw EscrowStoreError.io(operation: "mkdir", path: root, errno: errno)
        }
        for component in components {
            let parent = path
            path += "/\(component)"
            if mkdir(path, 0o700) == 0 {
                try sync.directory(parent)
            } else if errno != EEXIST {
                throw EscrowStoreError.io(operation: "mkdir", path: path, errno: errno)
            }
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
