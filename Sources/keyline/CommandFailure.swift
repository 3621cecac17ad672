import ArgumentParser
import Foundation

/// keyline's exit codes (sysexits.h values, so scripts and shells already know them). Listed in
/// `keyline --help`; every command maps its failures onto these.
enum KeylineExit: Int32, CaseIterable {
    case success = 0
    case failure = 1
    /// `audit`: at least one finding is an error.
    case auditErrors = 2
    /// `provision`, `restore --batch`: some devices failed, the others finished.
    case someDevicesFailed = 3
    /// `restore` refusals (nothing was written to the device), one code each.
    case restoreNoRegistration = 10
    case restoreBackupUnavailable = 11
    case restoreCannotDecrypt = 12
    case restoreBackupMismatch = 13
    case restorePlatformMismatch = 14
    case restoreDeviceProtected = 15
    case restoreDeviceNotAttached = 16
    case restoreRegistrationChanged = 17
    case usage = 64
    /// Bad input data: malformed or wrong key, blob, backup or pipeline.
    case dataError = 65
    /// An input file does not exist or cannot be read.
    case noInput = 66
    /// A device is missing, stopped answering, or cannot be used (USB, DFU).
    case unavailable = 69
    case software = 70
    /// An output file exists (never overwritten without --force) or cannot be created.
    case cannotCreate = 73
    case ioError = 74
    /// A temporary condition (database unreachable, conflict with another station): retry.
    case tempFail = 75
    /// The device or peer broke protocol (DFU error status, unexpected state).
    case protocolError = 76
    case noPermission = 77
    case configuration = 78
    /// The escrow directory store has a symlinked or group/world-writable folder: fix the folder.
    case unsafeEscrowStore = 79
    /// Stopped by Ctrl-C (128 + SIGINT, as shells report it).
    case interrupted = 130

    static let helpText = """
        EXIT CODES
          0   success
          1   failure not listed below
          2   audit: at least one finding is an error
          3   provision, restore --batch: some devices failed, the others are done
          10–17 restore refusals (see `keyline restore --help`); nothing was written to the device
          64  usage error (bad option or argument)
          65  bad input data (malformed or unsuitable key, blob, backup, pipeline)
          66  input file missing or unreadable
          69  device unavailable (not found, stopped answering, protected)
          73  output exists or cannot be created (nothing is overwritten without --force)
          74  I/O error
          75  temporary failure (database unreachable, conflict): retry
          76  protocol error from a device or peer (DFU status)
          77  permission denied
          78  configuration error
          79  unsafe escrow store: a symlink, or a group/world-writable folder, where the store's
              folders should be (the message names it and how to fix it); nothing was written
          130 interrupted (Ctrl-C); `provision --resume JOB` continues
        With --json, results and errors are JSON objects on standard output.
        """
}

/// An error the CLI can report: a stable kind for scripts, a message for people, context fields
/// (file, device, port, step …) and the exit code. Each module's error type conforms below or in
/// its command's file; anything else is reported as an internal failure.
protocol ReportableError: Error {
    var kind: String { get }
    var message: String { get }
    var context: [String: String] { get }
    var exit: KeylineExit { get }
}

extension ReportableError {
    var context: [String: String] { [:] }
}

/// A CLI-level failure with its context, e.g. a file that cannot be read.
struct CommandFailure: ReportableError {
    var kind: String
    var message: String
    var context: [String: String] = [:]
    var exit: KeylineExit

    static func cannotRead(_ path: String, _ error: Error) -> CommandFailure {
        let missing = !FileManager.default.fileExists(atPath: path)
        return CommandFailure(
            kind: missing ? "fileNotFound" : "fileUnreadable",
            message: missing ? "\(path): no such file" : "\(path): cannot be read (\(error.localizedDescription))",
            context: ["file": path], exit: .noInput)
    }

    static func cannotRead(_ path: String, errno code: Int32) -> CommandFailure {
        if code == ENOENT {
            return CommandFailure(kind: "fileNotFound", message: "\(path): no such file", context: ["file": path], exit: .noInput)
        }
        return CommandFailure(kind: "fileUnreadable", message: "\(path): cannot be read (\(String(cString: strerror(code))))",
                              context: ["file": path], exit: .noInput)
    }

    static func outputExists(_ path: String) -> CommandFailure {
        CommandFailure(kind: "outputExists", message: "\(path) already exists; keyline never overwrites it unless you pass --force",
                       context: ["file": path], exit: .cannotCreate)
    }

    /// A file keyline was asked to write lies inside an escrow store: only the store writes
    /// there, and only new objects (even --force never replaces one).
    static func insideEscrowStore(_ path: String, store: String) -> CommandFailure {
        CommandFailure(kind: "outputInEscrowStore",
                       message: "\(path) is inside the escrow store \(store); keyline never writes or replaces a file there (not even with --force). Choose an output outside the store",
                       context: ["file": path, "store": store], exit: .cannotCreate)
    }

    static func cannotWrite(_ path: String, errno code: Int32) -> CommandFailure {
        CommandFailure(kind: "cannotWrite", message: "\(path): cannot be written (\(String(cString: strerror(code))))",
                       context: ["file": path], exit: .cannotCreate)
    }
}

/// Adds context (typically the file) to a module error without losing its kind and exit code.
struct ContextualError: ReportableError {
    var underlying: ReportableError
    var extra: [String: String]
    var prefix: String

    var kind: String { underlying.kind }
    var message: String { prefix.isEmpty ? underlying.message : "\(prefix): \(underlying.message)" }
    var context: [String: String] { underlying.context.merging(extra) { _, new in new } }
    var exit: KeylineExit { underlying.exit }
}

extension Error {
    var reportable: ReportableError {
        if let error = self as? ReportableError { return error }
        return CommandFailure(kind: "internal", message: "\(self)", exit: .software)
    }

    /// The error with `file` recorded and named in its message.
    func about(file path: String) -> ReportableError {
        ContextualError(underlying: reportable, extra: ["file": path], prefix: path)
    }
}

/// Options every command shares.
struct OutputOptions: ParsableArguments {
    @Flag(name: .long, help: "Print results and errors as JSON on standard output.")
    var json = false
}

enum CLI {
    /// Runs a command body, reporting any failure for people (stderr) or as JSON (stdout) and
    /// exiting with its documented code.
    static func run(json: Bool, _ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch let exit as ExitCode {
            throw exit
        } catch {
            let failure = error.reportable
            if json {
                printJSON(["error": errorJSON(failure)])
            } else {
                FileHandle.standardError.write(Data("keyline: error: \(failure.message)\n".utf8))
            }
            throw ExitCode(failure.exit.rawValue)
        }
    }

    /// The "error" object of a JSON document: kind, message, exit code and context.
    static func errorJSON(_ failure: ReportableError) -> [String: Any] {
        var object: [String: Any] = ["kind": failure.kind, "message": failure.message, "exitCode": Int(failure.exit.rawValue)]
        if !failure.context.isEmpty { object["context"] = failure.context }
        return object
    }

    static func printJSON(_ object: Any) {
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else { return }
        FileHandle.standardOutput.write(data + Data("\n".utf8))
    }

    /// The contents of `path`, a regular file (or a pipe) of at most `limit` bytes, where `what`
    /// names what it should be ("a key file"). A directory, a device such as /dev/urandom or a
    /// larger file is refused with an error that says so, before more than `limit` + 1 bytes
    /// are read.
    static func readFile(_ path: String, limit: Int = 1 << 30, what: String = "an input file") throws -> [UInt8] {
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
    static func existsAsReplaceableFile(_ path: String) throws -> Bool {
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
    static func writeNewFile(_ path: String, _ bytes: [UInt8], mode: mode_t, force: Bool) throws {
        let pending = try PendingOutputFile(path: path, force: force, mode: mode)
        try pending.write(bytes)
        try pending.commit()
    }
}

/// What a file that is not a regular file is, for messages ("a directory").
enum FileType {
    static func describe(_ type: mode_t) -> String {
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
