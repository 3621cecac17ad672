#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Whole-file reads of what operators and pipelines name (key files, identities, recipients,
/// firmware images, batch lists): the one read loop. A directory, a device such as /dev/urandom
/// or a file larger than the caller's limit is refused with an error that says so, before more
/// than `limit` + 1 bytes are read (a device would otherwise be read without end).
public enum InputFile {
    /// The contents of `path`, a regular file (or, with `pipes`, a FIFO such as `<(…)`) of at
    /// most `limit` bytes. `what` names what the file should be ("a key file") for messages.
    public static func read(_ path: String, limit: Int = 1 << 30, what: String = "an input file",
                            pipes: Bool = true) throws(InputFileError) -> [UInt8] {
        // Refused by its type before it is opened: opening a device node can act on the device
        // (a serial port raises DTR). fstat below checks again what was actually opened.
        var named = stat()
        if stat(path, &named) == 0, !isReadable(named.st_mode & S_IFMT, pipes: pipes) {
            throw .notARegularFile(path: path, type: FileType.describe(named.st_mode & S_IFMT), what: what)
        }
        // O_NONBLOCK: opening a FIFO without a writer must not hang; reads below block again.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw .cannotOpen(path: path, errno: errno) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .cannotOpen(path: path, errno: errno) }
        let type = info.st_mode & S_IFMT
        guard isReadable(type, pipes: pipes) else {
            throw .notARegularFile(path: path, type: FileType.describe(type), what: what)
        }
        if type == S_IFREG, info.st_size > limit { throw .tooLarge(path: path, limit: limit, what: what) }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { readBlocking(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw .cannotRead(path: path, errno: errno)
            }
            if count == 0 { return bytes }
            bytes.append(contentsOf: chunk[0..<count])
            // Checked as it grows too: a file that grew since fstat, or a pipe.
            guard bytes.count <= limit else { throw .tooLarge(path: path, limit: limit, what: what) }
        }
    }
}

extension InputFile {
    /// A regular file, or a FIFO where pipes are welcome.
    static func isReadable(_ type: mode_t, pipes: Bool) -> Bool { type == S_IFREG || (pipes && type == S_IFIFO) }
}

/// read(2), named apart from `InputFile.read`.
private func readBlocking(_ fd: Int32, _ buffer: UnsafeMutableRawPointer?, _ count: Int) -> Int { read(fd, buffer, count) }

/// Why an input file could not be read. Never holds the file's bytes.
public enum InputFileError: Error, Sendable, Equatable, CustomStringConvertible {
    /// open(2) or fstat(2) failed (ENOENT: no such file).
    case cannotOpen(path: String, errno: Int32)
    case cannotRead(path: String, errno: Int32)
    /// A directory, a device, a socket… where a regular file was expected; `type` says which.
    case notARegularFile(path: String, type: String, what: String)
    case tooLarge(path: String, limit: Int, what: String)

    public var path: String {
        switch self {
        case .cannotOpen(let path, _), .cannotRead(let path, _), .notARegularFile(let path, _, _), .tooLarge(let path, _, _): path
        }
    }

    public var isMissing: Bool {
        if case .cannotOpen(_, let code) = self { return code == ENOENT }
        return false
    }

    /// What is wrong, without the path ("no such file", "a directory, not a regular file").
    public var reason: String {
        switch self {
        case .cannotOpen(_, let code) where code == ENOENT: "no such file"
        case .cannotOpen(_, let code), .cannotRead(_, let code): "cannot be read (\(String(cString: strerror(code))))"
        case .notARegularFile(_, let type, _): "\(type), not a regular file"
        case .tooLarge(_, let limit, _): "larger than \(limit) bytes"
        }
    }

    public var description: String {
        switch self {
        case .notARegularFile(let path, let type, let what): "\(path): \(type), not a regular file; give \(what)"
        case .tooLarge(let path, let limit, let what): "\(path): larger than \(limit) bytes, more than \(what) can be"
        default: "\(path): \(reason)"
        }
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
