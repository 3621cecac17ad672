import DeviceKeys
import Foundation
import Simulator
import Testing
import TestSupport

/// The escrow store under a careless operator, through the CLI (issue 12): no keyline command
/// writes or replaces a file inside a store, even with --force; an unsafe store folder exits 79.
@Suite struct EscrowStoreSafetyCLITests {
    /// A directory store with one backup in it (made by `escrow backup`); returns the object's path
    /// relative to `dir` and the recipient.
    static func storeWithOneObject(_ dir: TemporaryDirectory, store: String = "escrow") async throws -> (object: String, recipient: String) {
        let recipient = try await EscrowCLI.keygen(dir)
        #expect(try await KeylineBinary.run(["keys", "new", "--platform", "boron", "boron"], in: dir.url).status == 0)
        let key = try DevicePrivateKey(der: try dir.read("boron.der"))
        let backup = try await KeylineBinary.run(Self.backupArguments(recipient, store: store), in: dir.url)
        #expect(backup.status == 0, "\(backup.stderr)")
        return ("\(store)/acme/e00fce68a1b2c3d4e5f60718/\(key.publicKey.fingerprint).age", recipient)
    }

    static func backupArguments(_ recipient: String, store: String) -> [String] {
        ["escrow", "backup", "boron.der", "--device-id", "e00fce68a1b2c3d4e5f60718", "--platform", "boron",
         "--product", "acme", "--job", "job-1", "--station", "line-1", "-r", recipient, "--store", store]
    }

    @Test("escrow encrypt -o STORE/…/object.age --force, and every other writer, refuses paths inside a store")
    func writersRefusePathsInsideAStore() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (object, recipient) = try await Self.storeWithOneObject(dir)
        let before = try dir.read(object)
        try await dir.shell("echo plain > plain.txt && ln -s escrow/acme link-into-store")
        let linked = "link-into-store/" + object.split(separator: "/").suffix(2).joined(separator: "/")
        let attempts: [[String]] = [
            ["escrow", "encrypt", "-r", recipient, "-o", object, "--force", "plain.txt"],
            ["escrow", "encrypt", "-r", recipient, "-o", object, "plain.txt"],
            ["escrow", "encrypt", "-r", recipient, "-o", linked, "--force", "plain.txt"],
            ["escrow", "encrypt", "-r", recipient, "-o", "escrow/acme/new.age", "plain.txt"],
            ["escrow", "decrypt", "-i", "identity.txt", "-o", object, "--force", object],
            ["keys", "new", "--platform", "boron", "--force", "escrow/acme/e00fce68a1b2c3d4e5f60718/k"],
            ["make-firmware", "--platform", "photon", "--function", "user", "--index", "1", "--force", "-o", object],
        ]
        for arguments in attempts {
            let result = arguments[0] == "make-firmware"
                ? try await KeylineSimBinary.run(arguments + ["--json"], in: dir.url)
                : try await KeylineBinary.run(arguments + ["--json"], in: dir.url)
            let label = arguments.joined(separator: " ")
            #expect(result.status == 73, "\(label): \(result.stdout) \(result.stderr)")
            let error = try result.json()["error"] as? [String: Any]
            let (kind, message) = (error?["kind"] as? String, error?["message"] as? String ?? "")
            #expect(kind == "outputInEscrowStore", "\(label): \(result.stdout)")
            #expect(message.contains("inside the escrow store"), "\(label)")
        }
        #expect(try dir.read(object) == before)
        let files = try await dir.shell("find escrow -type f | sort").split(separator: "\n").map(String.init)
        #expect(files == ["escrow/.keyline-escrow-store", object], "\(files)")
        // Outside the store, --force still replaces as documented.
        #expect(try await KeylineBinary.run(["escrow", "encrypt", "-r", recipient, "-o", "out.age", "plain.txt"], in: dir.url).status == 0)
        #expect(try await KeylineBinary.run(["escrow", "encrypt", "-r", recipient, "-o", "out.age", "--force", "plain.txt"], in: dir.url).status == 0)
    }

    @Test("a symlinked or world-writable store folder: exit 79, a message that says what to fix, nothing written")
    func unsafeStoreFoldersExit79() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let recipient = try await EscrowCLI.keygen(dir)
        #expect(try await KeylineBinary.run(["keys", "new", "--platform", "boron", "boron"], in: dir.url).status == 0)
        try await dir.shell("mkdir -m 700 elsewhere store-a && ln -s elsewhere store-link && ln -s ../elsewhere store-a/acme && mkdir -m 777 store-open")
        for (store, fix) in [("store-link", "symbolic link"), ("store-a", "symbolic link"), ("store-open", "chmod go-w")] {
            let result = try await KeylineBinary.run(Self.backupArguments(recipient, store: store) + ["--json"], in: dir.url)
            #expect(result.status == 79, "\(store): \(result.stdout) \(result.stderr)")
            let error = try result.json()["error"] as? [String: Any]
            let (kind, message) = (error?["kind"] as? String, error?["message"] as? String ?? "")
            #expect(kind == "unsafeStore", "\(store)")
            #expect(message.contains(fix), "\(store): \(message)")
            let human = try await KeylineBinary.run(Self.backupArguments(recipient, store: store), in: dir.url)
            #expect(human.status == 79 && human.stderr.contains("unsafe escrow store"), "\(human.stderr)")
        }
        #expect(try await dir.shell("find elsewhere store-open -type f").isEmpty)
        // The code is documented.
        let help = try await KeylineBinary.run(["--help"], in: dir.url)
        #expect(help.stdout.contains("79  unsafe escrow store"))
        let provisionHelp = try await KeylineBinary.run(["provision", "--help"], in: dir.url)
        #expect(provisionHelp.stdout.contains("79   unsafe escrow store"))
    }

    @Test("provision refuses a symlinked store root before it touches a device (exit 79)", .timeLimit(.minutes(3)))
    func provisionRefusesAnUnsafeStoreRoot() async throws {
        let line = try await ProvisionLine(seed: 65) { fleet in
            try fleet.add(.photon, at: ProvisionTests.port(1, 1), mode: .dfu)
        }
        defer { Task { await line.stop() } }
        while line.fleet.attachedDevices().isEmpty { try await Task.sleep(for: .milliseconds(10)) }
        let real = line.scratch.file("real-store")
        try FileManager.default.createDirectory(at: real, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(at: line.store, withDestinationURL: real)
        let device = line.fleet.allDevices[0].device
        let before = device.statistics.controlTransfers
        let result = try await line.keyline(["provision", ProvisionLine.pipeline("photon-factory.yaml")])
        #expect(result.status == 79, "\(result.stderr)")
        #expect(result.stderr.contains("unsafe escrow store: \(line.store.path) is a symbolic link"), "\(result.stderr)")
        #expect(device.statistics.controlTransfers == before)
        #expect(try FileManager.default.contentsOfDirectory(atPath: real.path).isEmpty)
    }
}
