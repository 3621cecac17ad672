import Foundation

extension CLI {
    /// The contents of `path`, a regular file (or a pipe) of at most `limit` bytes, where `what`
    /// names what it should be ("a key file"). A directory, a device such as /dev/urandom or a
    /// larger file is refused with an error that says so, before more than `limit` + 1 bytes
    /// are read.
    public static func readFile(_ path: String, limit: Int = 1 << 30, what: String = "an input file") throws -> [UInt8] {
        // O_NONBLOCK: opening a FIFO without a writer must not hang; reads below block again.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw CommandFailure.cannotRead(path, errno: errno) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw CommandFailure.cannotRead(path, errno: errno) }
        let type = info.st_mode & S_IFMT
        guard type == S_IFREG || type == S_IFIFO else {
            throw CommandFailure(kind: "notARegularFile", message: "\(path): \(FileType.describe(type)), not a regular file; give \(what)",
                                 context: ["file": path], exit: .noInput)
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw CommandFailure.cannotRead(path, errno: errno)
            }
            if count == 0 { return bytes }
            bytes.append(contentsOf: chunk[0..<count])
            guard bytes.count <= limit else {
                throw CommandFailure(kind: "fileTooLarge", message: "\(path): larger than \(limit) bytes, more than \(what) can be",
                                     context: ["file": path, "limit": String(limit)], exit: .dataError)
            }
        }
    }

    /// Whether `path` exists; throws when it exists but is not a regular file, which --force must
    /// never replace (`-o /dev/stdout --force` would otherwise unlink or rename over a device link).
    public static func existsAsReplaceableFile(_ path: String) throws -> Bool {
        var info = stat()
        guard lstat(path, &info) == 0 else { return false }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw CommandFailure(kind: "notARegularFile", message: "\(path) exists and is not a regular file; choose a file name",
                                 context: ["file": path], exit: .cannotCreate)
        }
        return true
    }

    /// Writes a new file with `mode` set at creation (a private key is never briefly readable by
    /// others), through a temporary file published only once complete and fsynced (see
    /// `PendingOutputFile`): an existing file is never overwritten unless `force`, and then only a
    /// regular file, replaced atomically.
    public static func writeNewFile(_ path: String, _ bytes: [UInt8], mode: mode_t, force: Bool) throws {
        let pending = try PendingOutputFile(path: path, force: force, mode: mode)
        try pending.write(bytes)
        try pending.commit()
    }
}

/// What a file that is not a regular file is, for messages ("a directory").
public enum FileType {
    public static func describe(_ type: mode_t) -> String {
        switch type {
        case S_IFDIR: "a directory"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        case S_IFSOCK: "a socket"
        case S_IFLNK: "a symbolic link"
        case S_IFIFO: "a pipe"
        default: "not a regular file"
        }
    }
}
