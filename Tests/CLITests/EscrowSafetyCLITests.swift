import DeviceKeys
import Foundation
import Testing
import TestSupport

/// Secrets stay out of error output and terminals, and output files are never left half-written.
@Suite struct EscrowSafetyCLI {
    /// The identity file's secret key line and the part after its fixed prefix.
    static func secret(_ dir: TemporaryDirectory, _ name: String = "identity.txt") throws -> (line: String, payload: String) {
        let text = String(decoding: try dir.read(name), as: UTF8.self)
        let line = try #require(text.split(separator: "\n").first { $0.hasPrefix("AGE-SECRET-KEY-1") }.map(String.init))
        return (line, String(line.dropFirst("AGE-SECRET-KEY-1".count)))
    }

    /// Whether any 8 consecutive characters of the secret's payload appear in `output`, in any case.
    static func leaks(_ payload: String, in output: String) -> Bool {
        let haystack = output.uppercased(), characters = Array(payload.uppercased())
        return (0...(characters.count - 8)).contains { haystack.contains(String(characters[$0..<($0 + 8)])) }
    }

    @Test func anIdentityGivenAsARecipientIsNeverEchoed() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        _ = try await EscrowCLI.keygen(dir, "rma-identity.txt")
        let (line, payload) = try Self.secret(dir, "rma-identity.txt")
        #expect(try await KeylineBinary.run(["keys", "new", "--platform", "boron", "boron"], in: dir.url).status == 0)
        try await dir.shell("echo plain > plain.txt")
        let backup = ["escrow", "backup", "boron.der", "--device-id", "e00fce68a1b2c3d4e5f60718", "--platform", "boron",
                      "--product", "acme", "--job", "job-1", "--station", "line-1", "--store", "escrow"]
        let encrypt = ["escrow", "encrypt", "-o", "out.age", "plain.txt"]
        let mistakes: [(command: [String], recipient: [String], line: String?)] = [
            (backup, ["-R", "rma-identity.txt"], "line 3"), (backup, ["-r", line], nil), (backup, ["-r", line.lowercased()], nil),
            (encrypt, ["-R", "rma-identity.txt"], "line 3"), (encrypt, ["-r", line], nil),
        ]
        for mistake in mistakes {
            for json in [false, true] {
                let result = try await KeylineBinary.run(mistake.command + mistake.recipient + (json ? ["--json"] : []), in: dir.url)
                let label = "\(mistake.command[1]) \(mistake.recipient[0]) json=\(json)"
                #expect(result.status == 64, "\(label)")
                #expect(!Self.leaks(payload, in: result.stdout + result.stderr), "\(label): \(result.stdout) \(result.stderr)")
                let message = json ? (try result.json()["error"] as? [String: Any])?["message"] as? String ?? "" : result.stderr
                #expect(message.contains("identity (secret key), not a recipient"), "\(label): \(message)")
                #expect(message.contains("age-keygen -y"), "\(label)")
                if let where_ = mistake.line { #expect(message.contains("rma-identity.txt: \(where_)"), "\(label): \(message)") }
                if json { #expect((try result.json()["error"] as? [String: Any])?["kind"] as? String == "identityAsRecipient") }
            }
        }
        #expect(!FileManager.default.fileExists(atPath: dir.path("out.age")))
        #expect(!FileManager.default.fileExists(atPath: dir.path("escrow")))

        // Any other recipient text is quoted only as its first 12 characters.
        let long = try await KeylineBinary.run(encrypt + ["-r", "age1notarecipientbutsomethinglonger"], in: dir.url)
        #expect(long.status == 64)
        #expect(long.stderr.contains("\"age1notareci…\"") && !long.stderr.contains("age1notarecip"))
    }

    @Test func decryptRefusesToPrintAKeyToATerminal() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let recipient = try await EscrowCLI.keygen(dir)
        let key = try DevicePrivateKey.generate(.ec)
        try dir.write("backup.json", try EscrowCLI.backupDocument(key))
        #expect(try await KeylineBinary.run(["escrow", "encrypt", "-r", recipient, "-o", "backup.age", "backup.json"], in: dir.url).status == 0)
        // The document's key field (its base64 is written with escaped slashes, so match the name).
        let keyField = "\"private_key_der\""

        for arguments in [["escrow", "decrypt", "-i", "identity.txt", "backup.age"], ["escrow", "decrypt", "-i", "identity.txt", "-o", "-", "backup.age"]] {
            let refused = try await TerminalRun.run(arguments, in: dir.url)
            #expect(refused.status == 64, "\(refused.stderr)")
            #expect(refused.stderr.contains("terminal") && refused.stderr.contains("--reveal-key"))
            #expect(!refused.terminal.contains(keyField))
        }
        let revealed = try await TerminalRun.run(["escrow", "decrypt", "-i", "identity.txt", "--reveal-key", "backup.age"], in: dir.url)
        #expect(revealed.status == 0, "\(revealed.stderr)")
        #expect(revealed.terminal.contains(keyField))
        // A file or a pipe needs no flag.
        #expect(try await TerminalRun.run(["escrow", "decrypt", "-i", "identity.txt", "-o", "plain.json", "backup.age"], in: dir.url).status == 0)
        #expect(try dir.read("plain.json") == dir.read("backup.json"))
        let piped = try await KeylineBinary.run(["escrow", "decrypt", "-i", "identity.txt", "backup.age"], in: dir.url)
        let document = try dir.read("backup.json")
        #expect(piped.status == 0 && Array(piped.stdout.utf8) == document)
        #expect(try await KeylineBinary.run(["escrow", "decrypt", "--help"]).stdout.contains("--reveal-key"))
    }

    /// A full disk (here a file size limit, which makes write(2) fail with EFBIG) must not leave
    /// a truncated file under its final name to block the retry.
    @Test func aFailedWriteLeavesNoTruncatedFile() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let recipient = try await EscrowCLI.keygen(dir)
        #expect(try await KeylineBinary.run(["keys", "new", "--platform", "photon", "key"], in: dir.url).status == 0)
        let before = try FileManager.default.contentsOfDirectory(atPath: dir.url.path).sorted()
        let backup = ["escrow", "backup", "key.der", "--device-id", "e00fce68a1b2c3d4e5f60718", "--platform", "photon",
                      "--product", "acme", "--job", "job-1", "--station", "line-1", "-r", recipient, "-o", "backup.age"]
        // bash's ulimit -f counts 1024-byte blocks; the backup of an RSA-1024 key is about 1.4 KB.
        let limited = try await Subprocess.run("/bin/bash", ["-c", "cd \"$2\" && trap '' XFSZ && ulimit -f 1 && exec \"$1\" \"${@:3}\"",
                                                       "bash", KeylineBinary.url.path, dir.url.path] + backup)
        #expect(limited.status == 73, "\(limited.stderr)")
        #expect(limited.stderr.contains("backup.age: cannot be written"), "\(limited.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.url.path).sorted() == before)

        let retry = try await KeylineBinary.run(backup, in: dir.url)
        #expect(retry.status == 0, "\(retry.stderr)")
        #expect(try dir.mode("backup.age") == 0o600)
        #expect(try dir.read("backup.age").count > 1024)
        #expect(try await KeylineBinary.run(["escrow", "show", "-i", "identity.txt", "backup.age"], in: dir.url).status == 0)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.url.path).sorted() == (before + ["backup.age"]).sorted())

        // keys new --force replaces its files atomically, keeping their modes; nothing else is left behind.
        let oldKey = try dir.read("key.der")
        #expect(try await KeylineBinary.run(["keys", "new", "--platform", "photon", "--force", "key"], in: dir.url).status == 0)
        #expect(try dir.read("key.der") != oldKey)
        #expect(try dir.mode("key.pem") == 0o600 && dir.mode("key.pub.pem") == 0o644 && dir.mode("key.der") == 0o600)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.url.path).sorted() == (before + ["backup.age"]).sorted())

        // --force still never replaces anything but a regular file (here a symbolic link).
        try dir.write("target.txt", Array("keep\n".utf8))
        try FileManager.default.createSymbolicLink(atPath: dir.path("link.txt"), withDestinationPath: "target.txt")
        let refused = try await KeylineBinary.run(["escrow", "keygen", "-o", "link.txt", "--force", "--json"], in: dir.url)
        #expect(refused.status == 73)
        #expect((try refused.json()["error"] as? [String: Any])?["kind"] as? String == "notARegularFile")
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: dir.path("link.txt")) == "target.txt")
        #expect(try dir.read("target.txt") == Array("keep\n".utf8))
    }
}

/// Runs keyline with standard output on a pseudo-terminal (so isatty(1) is true), standard
/// error on a pipe; collects what the terminal showed. Kept apart from TestSupport's
/// `ChildProcess`, which gives a child pipes only.
struct TerminalRun {
    var status: Int32
    var stderr: String
    var terminal: String

    /// The blocking run on a dedicated thread, awaited without holding a cooperative thread.
    static func run(_ arguments: [String], in directory: URL) async throws -> TerminalRun {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try TerminalRun(arguments, in: directory) }) }.start()
        }
    }

    @discardableResult
    init(_ arguments: [String], in directory: URL) throws {
        // posix_openpt/unlockpt/ptsname need _XOPEN_SOURCE, which Swift's Glibc module lacks; these
        // are what they do on Linux (<asm-generic/ioctls.h>: TIOCSPTLCK, TIOCGPTN).
        let master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC)
        var unlock: Int32 = 0, number: UInt32 = 0
        guard master >= 0, ioctl(master, 0x4004_5431, &unlock) == 0, ioctl(master, 0x8004_5430, &number) == 0 else {
            throw CLITestFailure("no pseudo-terminal: \(String(cString: strerror(errno)))")
        }
        let slave = open("/dev/pts/\(number)", O_RDWR | O_NOCTTY | O_CLOEXEC)
        guard slave >= 0 else { throw CLITestFailure("cannot open /dev/pts/\(number)") }
        let process = Process()
        process.executableURL = KeylineBinary.url
        process.arguments = arguments
        process.currentDirectoryURL = directory
        let terminalHandle = FileHandle(fileDescriptor: slave, closeOnDealloc: false)
        process.standardOutput = terminalHandle
        process.standardInput = FileHandle.nullDevice
        let err = Pipe()
        process.standardError = err
        let output = TerminalOutput(master)
        try process.run()
        close(slave)
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        status = process.terminationStatus
        stderr = String(decoding: errData, as: UTF8.self)
        terminal = String(decoding: output.wait(), as: UTF8.self)
        close(master)
    }
}

/// Drains a pty master on its own thread until the last slave descriptor closes (EIO).
final class TerminalOutput: @unchecked Sendable {
    private var data = Data()
    private let done = DispatchSemaphore(value: 0)

    init(_ master: Int32) {
        Thread.detachNewThread { [self] in
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = buffer.withUnsafeMutableBytes { read(master, $0.baseAddress, $0.count) }
                if count < 0 && errno == EINTR { continue }
                if count <= 0 { break }
                data.append(contentsOf: buffer[..<count])
            }
            done.signal()
        }
    }

    func wait() -> Data {
        done.wait()
        return data
    }
}
