import Escrow
import Foundation

/// File plumbing for `keyline escrow encrypt|decrypt`: inputs and outputs stream in 64 KiB
/// chunks, and an output file appears under its name only once it is complete.
enum EscrowFiles {
    /// IN, or standard input for nil or "-". The caller closes a descriptor other than 0.
    static func openInput(_ path: String?) throws -> FileDescriptorSource {
        guard let path, path != "-" else { return FileDescriptorSource(descriptor: STDIN_FILENO, path: "standard input") }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw CommandFailure.cannotRead(path, POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)) }
        return FileDescriptorSource(descriptor: fd, path: path)
    }

    static func close(_ source: FileDescriptorSource) {
        if source.descriptor != STDIN_FILENO { Glibc.close(source.descriptor) }
    }
}

/// A new output file, written under a temporary name in the same directory (mode 0600) and
/// published with link(2) — which, unlike rename(2), never replaces an existing file — after an
/// fsync. Until `commit`, nothing is visible under the real name; `discard` removes the
/// temporary file, so a failed decryption leaves no partial plaintext behind.
final class PendingOutputFile {
    let path: String
    let force: Bool
    private let temporary: String
    private(set) var sink: FileDescriptorSink
    private var open = true

    init(path: String, force: Bool) throws {
        self.path = path
        self.force = force
        if try CLI.existsAsReplaceableFile(path), !force { throw CommandFailure.outputExists(path) }
        let url = URL(fileURLWithPath: path)
        temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).\(UUID().uuidString).tmp").path
        let fd = Glibc.open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw CommandFailure.cannotWrite(path, errno: errno) }
        sink = FileDescriptorSink(descriptor: fd, path: path)
    }

    func commit() throws {
        guard fsync(sink.descriptor) == 0 else { let code = errno; discard(); throw CommandFailure.cannotWrite(path, errno: code) }
        Glibc.close(sink.descriptor)
        open = false
        if force {
            guard rename(temporary, path) == 0 else { let code = errno; unlink(temporary); throw CommandFailure.cannotWrite(path, errno: code) }
        } else {
            let linked = link(temporary, path), code = errno
            unlink(temporary)
            if linked != 0 { throw code == EEXIST ? CommandFailure.outputExists(path) : CommandFailure.cannotWrite(path, errno: code) }
        }
    }

    func discard() {
        guard open else { return }
        Glibc.close(sink.descriptor)
        unlink(temporary)
        open = false
    }

    deinit { discard() }
}
