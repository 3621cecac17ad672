import Age
import Foundation
import LocalFiles

extension CLI {
    /// The contents of `path`, a regular file (or a pipe) of at most `limit` bytes, where `what`
    /// names what it should be ("a key file"). A directory, a device such as /dev/urandom or a
    /// larger file is refused with an error that says so, before more than `limit` + 1 bytes
    /// are read.
    public static func readFile(_ path: String, limit: Int = 1 << 30, what: String = "an input file") throws -> [UInt8] {
        try InputFile.read(path, limit: limit, what: what)
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

/// File plumbing for `keyline escrow encrypt|decrypt`: inputs and outputs stream in 64 KiB
/// chunks, and an output file appears under its name only once it is complete.
public enum EscrowFiles {
    /// IN, or standard input for nil or "-". The caller closes a descriptor other than 0.
    public static func openInput(_ path: String?) throws -> FileDescriptorSource {
        guard let path, path != "-" else { return FileDescriptorSource(descriptor: STDIN_FILENO, path: "standard input") }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw CommandFailure.cannotRead(path, POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)) }
        return FileDescriptorSource(descriptor: fd, path: path)
    }

    public static func close(_ source: FileDescriptorSource) {
        if source.descriptor != STDIN_FILENO { Glibc.close(source.descriptor) }
    }
}
