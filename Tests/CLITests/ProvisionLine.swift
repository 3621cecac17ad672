import Age
import DeviceKeys
import Escrow
import Foundation
import Registry
import Simulator
import Testing
import TestSupport

/// A simulated production line for `keyline provision` tests: a fleet served in-process through
/// the libusb stand-in (keyline runs as a child process, the real USB path), a fresh registry
/// database, an escrow identity, synthetic firmware and a directory store.
final class ProvisionLine: @unchecked Sendable {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    let fleet: SimulatedFleet
    let server: StandInServer
    let scratch: ScratchDirectory
    let database: String
    /// The registry's URL when the line does not use a database of the shared test cluster (a
    /// primary with a standby of the test's own); nil: database `database` of the test cluster.
    let registryURL: String?
    var environment: [String: String]
    var identity: URL { scratch.url.appendingPathComponent("rma-identity.txt") }
    var store: URL { scratch.url.appendingPathComponent("escrow") }
    var logs: URL { scratch.url.appendingPathComponent("logs") }
    /// The escrow store the line writes to when it is not the directory `store` (an S3 store).
    var objectStore: (any EscrowStore)?

    init(timeScale: Double = 0, seed: UInt64 = 1, cloudLink: SimulatedCloudLink? = nil, registryURL: String? = nil,
         _ build: (SimulatedFleet) throws -> Void) async throws {
        fleet = try SimulatedFleet(timeScale: timeScale, seed: seed, cloudLink: cloudLink)
        try build(fleet)
        server = StandInServer(socketPath: Subprocess.socketPath(), fleet: fleet)
        try server.start()
        scratch = try ScratchDirectory(label: "provision")
        self.registryURL = registryURL
        if let registryURL {
            database = ""
            environment = try Subprocess.standInEnvironment(socket: server.socketPath)
            environment["DATABASE_URL"] = registryURL
        } else {
            database = "kl_prov_" + String((0..<10).map { _ in "abcdefghijklmnopqrstuvwxyz0123456789".randomElement()! })
            try await DatabaseCLITests.psql("CREATE DATABASE \(database)")
            environment = try Subprocess.standInEnvironment(socket: server.socketPath)
                .merging(try DatabaseCLITests.environment(database: database)) { _, new in new }
            if environment["DATABASE_URL"] == nil { environment["DATABASE_URL"] = "" }
        }
        let firmware = scratch.url.appendingPathComponent("firmware")
        try FileManager.default.createDirectory(at: firmware, withIntermediateDirectories: true)
        environment["KEYLINE_FIRMWARE"] = firmware.path
        environment["KEYLINE_RECIPIENTS"] = scratch.url.appendingPathComponent("recipients.txt").path
        environment["KEYLINE_ESCROW_STORE"] = store.path
        environment["KEYLINE_STATION"] = "test-station"
        environment["KEYLINE_LOG_DIR"] = logs.path

        try await keyline(["db", "migrate"]).requireSuccess()
        let keygen = try await keyline(["escrow", "keygen", "-o", identity.path]).requireSuccess()
        try keygen.stdout.write(toFile: environment["KEYLINE_RECIPIENTS"]!, atomically: true, encoding: .utf8)
        for platform in ["photon", "boron"] {
            try await keylineSim(["make-firmware", "--platform", platform, "--function", "user", "--index", "1",
                               "-o", firmware.appendingPathComponent("\(platform)-user.bin").path]).requireSuccess()
        }
    }

    static func pipeline(_ name: String) -> String {
        packageRoot.appendingPathComponent("pipelines/\(name)").path
    }

    /// The product ID a shipped pipeline registers keys under (`product:` → `id:`).
    static func productID(_ pipeline: String) throws -> String {
        let text = try String(contentsOfFile: pipeline, encoding: .utf8)
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("  id:") }),
              let id = line.dropFirst(5).split(separator: "#").first?.trimmingCharacters(in: .whitespaces) else {
            throw CLITestFailure("no product id in \(pipeline)")
        }
        return id
    }

    @discardableResult
    func keyline(_ arguments: [String], timeout: Duration = .seconds(300)) async throws -> ChildProcess.Result {
        try await ChildProcess.run(Subprocess.keyline, arguments, environment: environment, timeout: timeout)
    }

    @discardableResult
    func keylineSim(_ arguments: [String], timeout: Duration = .seconds(300)) async throws -> ChildProcess.Result {
        try await ChildProcess.run(Subprocess.keylineSim, arguments, environment: environment, timeout: timeout)
    }

    func registry() async throws -> RegistryDatabase {
        if let registryURL { return try await RegistryDatabase.connect(ConnectionSettings(connectionString: registryURL)) }
        // libpq reads PG* from this process's own environment, so the database is named explicitly.
        return try await RegistryDatabase.connect(TestPostgres.settings
            .with(database: database))
    }

    func stop() async {
        server.stop()
        if registryURL == nil { try? await DatabaseCLITests.psql("DROP DATABASE IF EXISTS \(database) WITH (FORCE)") }
        scratch.remove()
    }

    /// The design's invariants, checked from the database, the escrow store (decrypting with the
    /// RMA identity) and every simulated device's key slot: each device of `devices` has exactly
    /// one active registration; its backup exists with the recorded SHA-256 and decrypts to a
    /// private key whose public key is the registered one and the one the device holds.
    func checkInvariants(product: String, devices: [SimulatedDevice]) async throws {
        let registry = try await registry()
        let identities = try X25519Identity.parseFile(String(contentsOf: identity, encoding: .utf8))
        let directory: any EscrowStore = objectStore ?? DirectoryEscrowStore(root: store)
        let registrations = try await registry.registrations(productID: product)
        for device in devices {
            let active = registrations.filter { $0.registration.deviceID == device.deviceID && $0.registration.status == .active }
            #expect(active.count == 1, "device \(device.deviceID) has \(active.count) active registrations")
            guard let audited = active.first else { continue }
            let object = audited.escrowObject
            let key = try EscrowObjectKey(product: product, deviceID: device.deviceID, publicKeySHA256: object.publicKeySHA256)
            #expect(object.objectKey == key.path)
            #expect(object.storeURI == directory.storeURI)
            let ciphertext = try await directory.get(key, expectedSHA256: object.ciphertextSHA256)
            let backup = try EscrowBackup.decrypt(ciphertext, identities: identities)
            #expect(backup.deviceID == device.deviceID)
            #expect(backup.privateKey.publicKey.fingerprint == audited.registration.fingerprint)
            #expect(backup.privateKey.publicKey.spkiDER == audited.registration.spkiDER)
            let held = try DevicePrivateKey(slot: device.privateKeySlot())
            #expect(held.publicKey.fingerprint == audited.registration.fingerprint,
                    "device \(device.deviceID) holds \(held.publicKey.fingerprint), registered \(audited.registration.fingerprint)")
            #expect(held.der == backup.privateKey.der)
        }
        // No registration without a backup anywhere in the product (the FK says so; check anyway).
        for audited in registrations {
            #expect(audited.escrowObject.publicKeySHA256 == audited.registration.fingerprint)
        }
    }

    /// Searches the runs' output, every file under the scratch folder and a dump of the database
    /// for any device's private key (DER as hex and base64, and the PEM body).
    /// `extraKeys`: keys no device holds any more (a key a restore overwrote, a key a bench replaced).
    func expectNoKeyMaterial(in results: [ChildProcess.Result], extraKeys: [DevicePrivateKey] = []) async throws {
        var needles: [String] = []
        let held = fleet.allDevices.compactMap { try? DevicePrivateKey(slot: $0.device.privateKeySlot()) }
        for key in held + extraKeys {
            let der = Data(key.der)
            needles.append(der.map { String(format: "%02x", $0) }.joined())
            needles.append(der.base64EncodedString())
            // A window of the secret part alone too, in case something printed part of it: the
            // private scalar of a SEC1 key (offset 7), the private exponent of a PKCS#1 key (after
            // the 1024-bit modulus and the exponent). The public parts are in the registry on purpose.
            let secret = key.algorithm == .ec ? key.der[7..<39] : key.der[160..<192]
            needles.append(Data(secret).base64EncodedString())
            needles.append(secret.map { String(format: "%02x", $0) }.joined())
        }
        #expect(!needles.isEmpty)
        var haystacks: [(String, String)] = results.flatMap { [("stdout", $0.stdout), ("stderr", $0.stderr)] }
        let files = FileManager.default.enumerator(at: scratch.url, includingPropertiesForKeys: nil)
        while let file = files?.nextObject() as? URL {
            if let data = try? Data(contentsOf: file) {
                haystacks.append((file.path, String(decoding: data, as: UTF8.self)))
                haystacks.append((file.path + " (as hex)", data.map { String(format: "%02x", $0) }.joined()))
            }
        }
        var dumpArguments = ["--data-only", "--no-owner"]
        if let url = environment["DATABASE_URL"], !url.isEmpty { dumpArguments.append(url) }
        let dump = try await ChildProcess.run("pg_dump", dumpArguments, environment: environment, timeout: .seconds(120))
        #expect(dump.status == 0, "\(dump.stderr)")
        #expect(dump.stdout.contains("COPY public.key_registrations"))
        haystacks.append(("database", dump.stdout))
        for (place, text) in haystacks {
            for needle in needles where text.contains(needle) {
                Issue.record("private key material found in \(place)")
            }
        }
    }

    /// The JSON lines of a `--json` run, decoded.
    static func events(_ result: ChildProcess.Result) -> [[String: Any]] {
        result.stdout.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    static func summary(_ result: ChildProcess.Result) -> [String: Any]? {
        events(result).last?["summary"] as? [String: Any]
    }
}

extension ProvisionLine {
    /// After a run stopped at a step boundary: every device past key_ready holds exactly the key
    /// its row records; then `--resume` finishes the job and every invariant holds.
    func expectRecordedKeysThenResume(job: Int, pipeline: String, rows: [JobDevice], registry: RegistryDatabase,
                                      sourceLocation: SourceLocation = #_sourceLocation) async throws {
        for row in rows {
            guard let fingerprint = row.keyFingerprint,
                  let device = fleet.allDevices.map(\.device).first(where: { $0.deviceID == row.deviceID }) else { continue }
            #expect(try DevicePrivateKey(slot: device.privateKeySlot()).publicKey.fingerprint == fingerprint,
                    sourceLocation: sourceLocation)
        }
        let resumed = try await keyline(["provision", pipeline, "--json", "--timeout", "10", "--resume", String(job)],
                                        timeout: .seconds(180))
        #expect(resumed.status == 0, "\(resumed.stderr)\n\(resumed.stdout.suffix(3000))", sourceLocation: sourceLocation)
        try await checkInvariants(product: try ProvisionLine.productID(pipeline), devices: fleet.allDevices.map(\.device))
        #expect(try await registry.job(id: Int64(job))?.status == .completed, sourceLocation: sourceLocation)
    }
}
