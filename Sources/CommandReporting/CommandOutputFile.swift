import Escrow
import Age
import Foundation
/// A new output file, written under a temporary name in the same directory — created with its
/// final mode, so a private key is never even briefly readable by others — and published after
/// an fsync with link(2), which unlike rename(2) never replaces an existing file (with `force`,
/// rename(2), which replaces it atomically); then the directory is fsynced so the name survives
/// a power cut. Until `commit`, nothing is visible under the real name: a crash, a full disk or
/// a failed decryption leaves no truncated file there to block the retry, and `discard` (also
/// run on deinit) removes the temporary file. A path inside an escrow store is always refused.
public final class PendingOutputFile {
    public let path: String
    public let force: Bool
    private let temporary: String
    public private(set) var sink: FileDescriptorSink
    private var open = true

    public init(path: String, force: Bool, mode: mode_t = 0o600) throws {
        self.path = path
        self.force = force
        // Checked before anything else, --force or not: an escrow object is never replaced.
        if let store = DirectoryEscrowStore.enclosingStore(of: path) { throw CommandFailure.insideEscrowStore(path, store: store) }
        if try CLI.existsAsReplaceableFile(path), !force { throw CommandFailure.outputExists(path) }
        let url = URL(fileURLWithPath: path)
        temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).\(UUID().uuidString).tmp").path
        let fd = Glibc.open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw CommandFailure.cannotWrite(path, errno: errno) }
        sink = FileDescriptorSink(descriptor: fd, path: path)
    }

    /// Writes all of `bytes` (the sink retries EINTR and short writes); a failure such as a full
    /// disk discards the temporary file and is reported as `cannotWrite`.
    public func write(_ bytes: [UInt8]) throws {
        do {
            try bytes.withUnsafeBytes { try sink.write($0) }
        } catch AgeError.io(_, _, let code) {
            discard()
            throw CommandFailure.cannotWrite(path, errno: code)
        }
    }

    public func commit() throws {
        if let code = Self.fsyncRetryingEINTR(sink.descriptor) { discard(); throw CommandFailure.cannotWrite(path, errno: code) }
        Glibc.close(sink.descriptor)
        open = false
        if force {
            guard rename(temporary, path) == 0 else { let code = errno; unlink(temporary); throw CommandFailure.cannotWrite(path, errno: code) }
        } else {
            let linked = link(temporary, path), code = errno
            unlink(temporary)
            if linked != 0 { throw code == EEXIST ? CommandFailure.outputExists(path) : CommandFailure.cannotWrite(path, errno: code) }
        }
        // The new name is durable only once its directory is.
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        let fd = Glibc.open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw CommandFailure.cannotWrite(path, errno: errno) }
        defer { Glibc.close(fd) }
        if let code = Self.fsyncRetryingEINTR(fd) { throw CommandFailure.cannotWrite(path, errno: code) }
    }

    /// nil on success, else the errno.
    private static func fsyncRetryingEINTR(_ fd: Int32) -> Int32? {
        while fsync(fd) != 0 {
            if errno != EINTR { return errno }
        }
        return nil
    }

    public func discard() {
        guard open else { return }
        Glibc.close(sink.descriptor)
        unlink(temporary)
        open = false
    }

    deinit { discard() }
}
