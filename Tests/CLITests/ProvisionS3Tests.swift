import Age
import EscrowS3
import DeviceKeys
import Escrow
import Foundation
import Registry
import Simulator
import Testing
import TestSupport

/// `keyline provision` and `keyline restore` with the escrow store in S3 (`escrow.store:
/// s3://bucket/prefix` through KEYLINE_ESCROW_STORE), against the local S3 server of `make s3-up`
/// (issue 14): the same runner, the same write-ahead escrow and resume, objects other tools read.
/// Throwaway credentials; the endpoint is always the local server (or a proxy in front of it).
@Suite("keyline provision and restore with an S3 escrow store", .serialized)
struct ProvisionS3Tests {
    static let secret = "keyline-test-secret-never-printed"

    static func awsEnvironment(_ endpoint: String) -> [String: String] {
        ["AWS_ENDPOINT_URL": endpoint, "AWS_ENDPOINT_URL_S3": endpoint, "AWS_REGION": "us-east-1",
         "AWS_ACCESS_KEY_ID": "keyline-test", "AWS_SECRET_ACCESS_KEY": secret, "AWS_SESSION_TOKEN": "", "AWS_PROFILE": ""]
    }

    /// Points the line's store at a fresh bucket, `s3://bucket/line-1`, reached through `endpoint`
    /// (default: the server itself); returns a store on the server for the test's own reads.
    @discardableResult
    static func useS3(_ line: ProvisionLine, through endpoint: String? = nil) async throws -> S3EscrowStore {
        let server = try EscrowS3CLITests.endpoint()
        let bucket = "kl-prov-" + String((0..<12).map { _ in "abcdefghijklmnopqrstuvwxyz0123456789".randomElement()! })
        let direct = try S3EscrowStore(uri: "s3://\(bucket)/line-1", environment: awsEnvironment(server))
        try await direct.createBucket()
        line.environment.merge(awsEnvironment(endpoint ?? server)) { _, new in new }
        line.environment["KEYLINE_ESCROW_STORE"] = "s3://\(bucket)/line-1"
        line.objectStore = direct
        return direct
    }

    /// The `aws` CLI (PyPI awscli) against the local server, with nothing of the developer's AWS setup.
    static func aws(_ arguments: [String]) async throws -> ChildProcess.Result {
        let assignments = awsEnvironment(try EscrowS3CLITests.endpoint()).filter { !$0.value.isEmpty }
            .map { "\($0.key)=\($0.value)" }.sorted()
        return try await ChildProcess.run("/usr/bin/env", ["-u", "AWS_PROFILE", "-u", "AWS_SESSION_TOKEN"] + assignments
                                          + ["HOME=/nonexistent", "AWS_PAGER=", "aws"] + arguments, timeout: .seconds(120))
    }

    static func waitForDevices(_ line: ProvisionLine, _ count: Int) async throws {
        try await waitUntil("\(count) devices attached") { line.fleet.attachedDevices().count >= count }
    }

    @Test("4 Photons provisioned into S3: the aws CLI reads each backup, Debian's age decrypts it; a rerun skips them",
          .timeLimit(.minutes(5)))
    func fourPhotonsIntoS3() async throws {
        let line = try await ProvisionLine(seed: 61) { fleet in
            for index in 1...4 { try fleet.add(.photon, at: ProvisionTests.port(1, index), mode: .dfu) }
        }
        defer { Task { await line.stop() } }
        let store = try await Self.useS3(line)
        try await Self.waitForDevices(line, 4)
        let pipeline = ProvisionLine.pipeline("photon-factory.yaml")

        let first = try await line.keyline(["provision", pipeline, "--json"])
        #expect(first.status == 0, "\(first.stderr)\n\(first.stdout.suffix(3000))")
        let summary = try #require(ProvisionLine.summary(first))
        let product = try #require(summary["product"] as? String)
        let reports = summary["devices"] as? [[String: Any]] ?? []
        #expect(reports.filter { $0["outcome"] as? String == "done" }.count == 4)
        // Registry, store (read through S3, decrypted) and devices agree; nothing went to a directory.
        try await line.checkInvariants(product: product, devices: line.fleet.allDevices.map(\.device))
        #expect(!FileManager.default.fileExists(atPath: line.store.path))

        let registrations = try await line.registry().registrations(productID: product)
        #expect(registrations.count == 4)
        for audited in registrations {
            let object = audited.escrowObject
            #expect(object.storeURI == "s3://\(store.settings.bucket)/line-1")
            let file = line.scratch.url.appendingPathComponent("\(audited.registration.deviceID).age")
            let copy = try await Self.aws(["s3", "cp", "s3://\(store.settings.bucket)/line-1/\(object.objectKey)", file.path])
            #expect(copy.status == 0, "\(copy.stderr)")
            #expect(Age.sha256(Array(try Data(contentsOf: file))) == object.ciphertextSHA256)
            let plain = try await ChildProcess.run(try ChildProcess.locate("age").path, ["-d", "-i", line.identity.path, file.path])
            #expect(plain.status == 0, "\(plain.stderr)")
            let document = try #require(JSONSerialization.jsonObject(with: Data(plain.stdout.utf8)) as? [String: Any])
            #expect(document["device_id"] as? String == audited.registration.deviceID)
            #expect(document["public_key_sha256"] as? String == audited.registration.fingerprint)
            #expect(document["product"] as? String == product)
        }

        // A rerun touches nothing: every device is provisioned, no object is written again.
        let again = try await line.keyline(["provision", pipeline, "--json"])
        #expect(again.status == 0, "\(again.stderr)")
        let skipped = ProvisionLine.summary(again)?["devices"] as? [[String: Any]] ?? []
        #expect(skipped.count == 4 && skipped.allSatisfy { $0["outcome"] as? String == "skipped" })
        let listing = try await Self.aws(["s3api", "list-objects-v2", "--bucket", store.settings.bucket, "--query", "Contents[].Key", "--output", "text"])
        let keys = listing.stdout.split(whereSeparator: { $0.isWhitespace }).map(String.init)
        #expect(keys.filter { $0.hasSuffix(".age") }.count == 4, "\(listing.stdout) \(listing.stderr)")
        // Besides them, only the store's conditional-put probe (S3EscrowStore+ConditionalPut.swift).
        #expect(keys.filter { !$0.hasSuffix(".age") } == ["line-1/\(S3EscrowStore.probeName)"], "\(keys)")

        try await line.expectNoKeyMaterial(in: [first, again])
        #expect(![first, again].contains { ($0.stdout + $0.stderr).contains(Self.secret) })
    }

    @Test("killed after the store kept an object whose reply was lost: --resume adopts that very object",
          .timeLimit(.minutes(5)))
    func lostReplyThenKillResumesByAdoption() async throws {
        let line = try await ProvisionLine(seed: 62) { fleet in
            for index in 1...2 { try fleet.add(.photon, at: ProvisionTests.port(1, index), mode: .dfu) }
        }
        defer { Task { await line.stop() } }
        // The first PUT reaches the store, its reply is lost, and every later request fails: the
        // object is stored and keyline cannot hear of it. keyline is killed in that window.
        let proxy = try LostReplyProxy(upstream: try EscrowS3CLITests.endpoint())
        defer { proxy.stop() }
        let store = try await Self.useS3(line, through: proxy.endpoint)
        try await Self.waitForDevices(line, 2)
        let pipeline = ProvisionLine.pipeline("photon-factory.yaml")

        let process = Process()
        process.executableURL = URL(fileURLWithPath: Subprocess.keyline)
        process.arguments = ["provision", pipeline, "--json"]
        process.environment = ProcessInfo.processInfo.environment.merging(line.environment) { _, new in new }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let lost = try await proxy.lostReply(within: .seconds(120))
        kill(process.processIdentifier, SIGKILL)
        await process.waitForExit()
        // "PUT /bucket/line-1/<product>/<device-id>/<spki-sha256>.age 200"
        let words = lost.split(separator: " ")
        #expect(words.first == "PUT" && words.last == "200", "\(lost)")
        let parts = words[1].split(separator: "/").map(String.init)
        try #require(parts.count == 5 && parts[1] == "line-1", "\(lost)")
        let key = try EscrowObjectKey(product: parts[2], deviceID: parts[3], publicKeySHA256: String(parts[4].dropLast(4)))

        // The store has the object; the registry has its intent only, no registration.
        let kept = line.scratch.url.appendingPathComponent("kept.age")
        let copy = try await Self.aws(["s3", "cp", "s3://\(store.settings.bucket)/line-1/\(key.path)", kept.path])
        #expect(copy.status == 0, "\(copy.stderr)")
        let keptSHA256 = Age.sha256(Array(try Data(contentsOf: kept)))
        let registry = try await line.registry()
        #expect(try await registry.registrations(productID: key.product).filter { $0.registration.deviceID == key.deviceID }.isEmpty)
        let job = try #require(try await registry.unfinishedJobs(station: "test-station").last?.id)

        // Resumed with the store back (the server itself): the device's object is adopted, not
        // written again (a new encryption could not be: S3 refuses the key, and the bytes differ).
        line.environment.merge(Self.awsEnvironment(try EscrowS3CLITests.endpoint())) { _, new in new }
        let resumed = try await line.keyline(["provision", pipeline, "--json", "--resume", String(job)])
        #expect(resumed.status == 0, "\(resumed.stderr)\n\(resumed.stdout.suffix(3000))")
        let adopted = ProvisionLine.events(resumed).filter { ($0["message"] as? String ?? "").contains("\(key.path) was written by an earlier run: adopted") }
        #expect(adopted.count == 1, "\(resumed.stdout.suffix(3000))")
        let object = try #require(try await registry.escrowObjects(deviceID: key.deviceID).first)
        #expect(object.ciphertextSHA256 == keptSHA256)
        #expect(try await store.get(key, expectedSHA256: keptSHA256).count > 0)
        try await line.checkInvariants(product: key.product, devices: line.fleet.allDevices.map(\.device))
    }

    @Test("restore reads the backup from S3: a blank slot, and another valid key escrowed to S3 before it is overwritten",
          .timeLimit(.minutes(5)))
    func restoreFromS3() async throws {
        let line = try await ProvisionLine(seed: 63) { fleet in
            for index in 1...2 { try fleet.add(.photon, at: ProvisionTests.port(1, index), mode: .dfu) }
        }
        defer { Task { await line.stop() } }
        let store = try await Self.useS3(line)
        let (product, provisioned) = try await RestoreTests.provision(line, count: 2)
        let devices = line.fleet.allDevices.map(\.device)
        let originals = try devices.map { try RestoreTests.dct($0) }

        try RestoreTests.setSlot(devices[0], [])                 // blank
        let other = try DevicePrivateKey.generate(.rsa)          // another valid key
        try RestoreTests.setSlot(devices[1], other.der)

        var results = [provisioned]
        for (index, device) in devices.enumerated() {
            let result = try await line.keyline(["restore", device.deviceID, "--identity", line.identity.path,
                                                 "--reason", "returned", "--ticket", "RMA-S3-\(index)", "--json"])
            #expect(result.status == 0, "\(result.stderr)\n\(result.stdout)")
            results.append(result)
            #expect(ProvisionLine.events(result).last?["foundKey"] as? String == ["blank", "other"][index])
        }
        for (device, original) in zip(devices, originals) {
            let slot = device.platform.privateKeySlot
            #expect(Array(try RestoreTests.dct(device)[slot.offset..<slot.offset + slot.size]) == Array(original[slot.offset..<slot.offset + slot.size]))
        }
        try await line.checkInvariants(product: product, devices: devices)

        // The other key went to the same S3 store the registry names, and decrypts to exactly it.
        let registry = try await line.registry()
        let superseded = try #require(try await registry.escrowObjects(deviceID: devices[1].deviceID)
            .first { $0.publicKeySHA256 == other.publicKey.fingerprint })
        #expect(superseded.storeURI == store.storeURI)
        let ciphertext = try await store.get(
            EscrowObjectKey(product: product, deviceID: devices[1].deviceID, publicKeySHA256: superseded.publicKeySHA256),
            expectedSHA256: superseded.ciphertextSHA256)
        let identities = try X25519Identity.parseFile(String(contentsOf: line.identity, encoding: .utf8))
        #expect(try EscrowBackup.decrypt(ciphertext, identities: identities).privateKey.der == other.der)
        #expect(!FileManager.default.fileExists(atPath: line.store.path))
        try await line.expectNoKeyMaterial(in: results, extraKeys: [other])
        #expect(!results.contains { ($0.stdout + $0.stderr).contains(Self.secret) })
    }

    @Test("audit --check-store --decrypt reads an S3 store: clean, then an orphan (warning) and a deleted object (error)",
          .timeLimit(.minutes(5)))
    func auditReadsTheS3Store() async throws {
        let line = try await ProvisionLine(seed: 64) { fleet in
            for index in 1...2 { try fleet.add(.photon, at: ProvisionTests.port(1, index), mode: .dfu) }
        }
        defer { Task { await line.stop() } }
        let store = try await Self.useS3(line)
        let (product, _) = try await RestoreTests.provision(line, count: 2)
        let bucket = store.settings.bucket
        let audit = ["audit", "--product", product, "--check-store", "--decrypt", "--identity", line.identity.path, "--format", "json"]

        let clean = try await line.keyline(audit)
        #expect(clean.status == 0, "\(clean.stderr)\n\(clean.stdout)")
        #expect(try AuditTests.findings(clean).isEmpty, "\(clean.stdout)")

        // A foreign object in the product's part of the prefix is an orphan; one outside the prefix is not the store's.
        try Data("not a backup".utf8).write(to: line.scratch.file("foreign.bin"))
        for key in ["line-1/\(product)/dddddddddddddddddddddd04/\(String(repeating: "e", count: 64)).age", "line-2/\(product)/x.age"] {
            let put = try await Self.aws(["s3api", "put-object", "--bucket", bucket, "--key", key, "--body", line.scratch.path("foreign.bin")])
            #expect(put.status == 0, "\(put.stderr)")
        }
        let warned = try await line.keyline(audit)
        #expect(warned.status == 0, "\(warned.stderr)")
        #expect(try AuditTests.findings(warned).map(\.code) == ["orphan_object"], "\(warned.stdout)")

        // A backup deleted from the bucket: missing, an error (exit 2).
        let registration = try #require(try await line.registry().registrations(productID: product).first)
        let removed = try await Self.aws(["s3", "rm", "s3://\(bucket)/line-1/\(registration.escrowObject.objectKey)"])
        #expect(removed.status == 0, "\(removed.stderr)")
        let failed = try await line.keyline(audit)
        #expect(failed.status == 2, "\(failed.stderr)")
        let codes = try AuditTests.findings(failed).map(\.code)
        #expect(codes.sorted() == ["escrow_object_missing", "orphan_object"], "\(failed.stdout)")
        #expect(!(clean.stdout + clean.stderr + failed.stdout + failed.stderr).contains(Self.secret))
    }
}

/// The fault proxy of the S3 tests (Tests/EscrowS3Tests/Fixtures/s3-fault-proxy.py) in front of the
/// server: one lost reply, then down (`--lose-reply 1 --down-after-lose`).
final class LostReplyProxy: @unchecked Sendable {
    private let process = Process()
    private let lock = NSLock()
    private var lines: [String] = []
    private(set) var endpoint = ""

    init(upstream: String) throws {
        let script = ProvisionLine.packageRoot.appendingPathComponent("Tests/EscrowS3Tests/Fixtures/s3-fault-proxy.py").path
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script, "--port", "0", "--upstream", upstream.replacingOccurrences(of: "http://", with: ""),
                             "--lose-reply", "1", "--down-after-lose"]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let handle = pipe.fileHandleForReading
        Thread.detachNewThread { [weak self] in
            var buffer = Data()
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { return }
                buffer += chunk
                while let newline = buffer.firstIndex(of: 0x0a) {
                    let line = String(decoding: buffer[..<newline], as: UTF8.self)
                    buffer = Data(buffer[(newline + 1)...])
                    guard let self else { return }
                    self.lock.withLock { self.lines.append(line) }
                }
            }
        }
        let deadline = ContinuousClock.now + .seconds(20)
        while endpoint.isEmpty {
            if let line = lock.withLock({ lines.first { $0.hasPrefix("listening ") } }) {
                endpoint = "http://127.0.0.1:\(line.dropFirst("listening ".count))"
            } else if ContinuousClock.now > deadline || !process.isRunning {
                throw CLITestFailure("the fault proxy did not start")
            } else {
                Thread.sleep(forTimeInterval: 0.02)
            }
        }
    }

    /// "METHOD PATH STATUS" of the request whose reply was lost, once it happened.
    func lostReply(within timeout: Duration) async throws -> String {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let line = lock.withLock({ lines.first { $0.hasPrefix("fault lose-reply ") } }) {
                return String(line.dropFirst("fault lose-reply ".count))
            }
            try await Task.sleep(for: .milliseconds(5))
        }
        throw CLITestFailure("no reply was lost within \(timeout)")
    }

    func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
}
