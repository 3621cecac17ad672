import ArgumentParser
import DeviceKeys
import Escrow
import ParticlePlatform
import Provisioning
import RMABench
import Foundation
import Registry
import CommandReporting
import EscrowS3

/// Where a bench escrows keys and what it records them as: the line's store and recipients
/// (`KEYLINE_ESCROW_STORE`, `KEYLINE_RECIPIENTS`) unless given, and this bench's name.
struct BenchEscrowOptions: ParsableArguments {
    @Option(help: "Escrow store: a directory or s3://bucket/prefix (default: KEYLINE_ESCROW_STORE).")
    var store: String?

    @Option(name: [.customShort("R"), .customLong("recipients-file")],
            help: "A file of age1… recipients (repeatable; default: KEYLINE_RECIPIENTS).")
    var recipientFiles: [String] = []

    @Option(help: "This bench's name (default: KEYLINE_STATION or the host name).")
    var station: String?

    var stationName: String {
        StationName.resolve(station)
    }

    func escrow(_ registry: RegistryDatabase) throws -> BenchEscrow {
        let environment = ProcessInfo.processInfo.environment
        guard let storeURI = store ?? environment["KEYLINE_ESCROW_STORE"], !storeURI.isEmpty else {
            throw CommandFailure(kind: "noEscrowStore", message: "no escrow store: give --store DIR|s3://bucket/prefix or set KEYLINE_ESCROW_STORE",
                                 exit: .configuration)
        }
        let files = recipientFiles.isEmpty ? [environment["KEYLINE_RECIPIENTS"]].compactMap { $0 }.filter { !$0.isEmpty } : recipientFiles
        let recipients = try EscrowCommand.loadRecipients([], files: files)
        guard !recipients.isEmpty else {
            throw CommandFailure(kind: "noRecipients", message: "no escrow recipients: give --recipients-file FILE or set KEYLINE_RECIPIENTS",
                                 exit: .configuration)
        }
        return BenchEscrow(registry: registry, store: try EscrowStores.open(storeURI), recipients: recipients,
                           station: stationName)
    }

    /// The registry, checked before anything is escrowed or written: current schema, and a login
    /// bound to this bench (an object escrowed for a row the database then refuses would stay in
    /// a write-once store for good).
    func connect(action: String) async throws -> RegistryDatabase {
        let registry = try await RegistryDatabase.connect(.fromEnvironment())
        try await registry.requireCurrentSchema()
        try await registry.requireBoundStation(stationName, action: action)
        return registry
    }
}

extension KeysCommand {
    struct Send: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Register a device's public key for a product in the registry.",
            discussion: """
                As `particle keys send [DEVICE_ID] [FILE] --product_id N`, with keyline's registry in place \
                of the cloud API: DEVICE_ID defaults to the only device attached; FILE defaults to the \
                device ID, then NAME.pub.pem. FILE may be a private or public key, PEM or DER. A key is \
                registered only with a recorded backup: for a private key file that has none, the key is \
                escrowed first (--store, --recipients-file); a public key needs one recorded already \
                (`keys doctor`, provisioning). An active key of the device is replaced only with \
                --supersede (recorded as a key.superseded event); a key registered to another device is \
                refused. With --platform (or the device attached), a key the platform cannot use is \
                refused. The login needs the keyline_rma or an admin role.

                \(KeylineExit.helpText)
                """)

        @Argument(help: "Device ID (24 hex digits). Default: the only device attached.")
        var deviceID: String?

        @Argument(help: "Key file. Default: DEVICE_ID, then DEVICE_ID.pub.pem.")
        var file: String?

        @Option(name: [.customLong("product"), .customLong("product_id")], help: "Product to register the key in.")
        var product: String

        @Flag(help: "Replace the device's active key in the product (recorded).")
        var supersede = false

        @Option(help: "Why the key is sent (recorded with a supersede).")
        var reason: String?

        @Option(help: "The device's platform, when it is not attached (to check the key and escrow it).")
        var platform: String?

        @OptionGroup var escrowOptions: BenchEscrowOptions
        @OptionGroup var target: DeviceOptions
        @OptionGroup var output: OutputOptions

        func run() async throws {
            try await DatabaseCommand.run(json: output.json) {
                var chosenPlatform = try platform.map { name throws(PlatformError) in try Platform.named(name) }
                let id: String
                if let given = deviceID ?? target.device {
                    id = given.lowercased()
                    if chosenPlatform == nil, let attached = try? await target.chooseAttached(id) { chosenPlatform = attached.platform }
                } else {
                    guard let attached = try await target.chooseAttached() else { throw BenchError.noDevices }
                    id = attached.deviceID
                    if chosenPlatform == nil { chosenPlatform = attached.platform }
                }
                var path = file ?? id
                if !FileManager.default.fileExists(atPath: path) {
                    path = New.filenameWithoutExtension(path) + ".pub.pem"
                }
                let parsed: KeyFile
                do { parsed = try KeyFile.parse(try CLI.readFile(path, limit: KeyFile.maximumFileSize, what: "a key file")) } catch { throw error.about(file: path) }
                if let chosenPlatform {
                    do {
                        if let key = parsed.privateKey { try chosenPlatform.checkDeviceKey(key) } else { try chosenPlatform.checkAlgorithm(parsed.publicKey) }
                    } catch {
                        throw BenchKeyError.wrongAlgorithm(deviceID: id, platform: chosenPlatform.name, detail: "\(error)")
                    }
                }
                let registry = try await escrowOptions.connect(action: "register keys")
                let bench = BenchKeyRegistration(registry: registry, station: escrowOptions.stationName)
                try await bench.requireUnclaimed(parsed.publicKey, deviceID: id)
                var backup = try await bench.recordedBackup(of: parsed.publicKey, deviceID: id, product: product)
                if backup == nil, let key = parsed.privateKey {
                    guard let chosenPlatform else {
                        throw CommandFailure(kind: "platformNeeded", message: "device \(id) is not attached: give --platform to escrow its key",
                                             context: ["device": id], exit: .usage)
                    }
                    backup = try await escrowOptions.escrow(registry).escrow(
                        key, deviceID: id, platform: chosenPlatform.name, product: product, label: "keys-send",
                        reason: "escrowed by keys send")
                }
                let (registered, superseded) = try await bench.register(
                    parsed.publicKey, deviceID: id, product: product, backup: backup, supersede: supersede,
                    reason: reason ?? "keys send: replaced by \(parsed.publicKey.fingerprint)")
                if output.json {
                    var object: [String: Any] = [
                        "deviceID": id, "product": product, "file": path, "fingerprint": registered.fingerprint,
                        "registrationID": registered.id, "escrowObjectID": registered.escrowObjectID,
                    ]
                    object["supersededRegistrationID"] = superseded?.id
                    object["supersededFingerprint"] = superseded?.fingerprint
                    CLI.printJSON(object)
                } else {
                    print("Registered key \(registered.fingerprint) for device \(id) in product \(product)"
                          + (superseded.map { "; key \($0.fingerprint) superseded" } ?? ""))
                }
            }
        }
    }

    struct Doctor: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Give the device a new key: escrow, load, read back, register.",
            discussion: """
                As `particle keys doctor [DEVICE_ID]`, leaving the same records as the line: a new key \
                for the platform (RSA-1024 PKCS#1 on TCP platforms, EC P-256 SEC1 on UDP ones) is made in \
                memory, escrowed (--store, --recipients-file; recorded with a key.escrowed event), written \
                into the slot over exactly what was there and read back; the device leaves DFU mode; \
                then the key is registered in --product (default: the product of the device's active \
                key), superseding the active key (key.superseded, key.registered events). A valid key \
                found in the slot is escrowed first unless its backup is recorded: no key is lost. \
                Unlike particle-cli no private key file is written (only DEVICE_ID_<alg>_new.pub.pem); \
                if the registration fails, `keys send DEVICE_ID DEVICE_ID_<alg>_new.pub.pem --supersede` \
                finishes it.

                \(KeylineExit.helpText)
                """)

        @Argument(help: "Device ID. Default: --device, or the only device attached.")
        var deviceID: String?

        @Option(name: [.customLong("product"), .customLong("product_id")], help: "Product to register the new key in.")
        var product: String?

        @Flag(help: "Replace an existing DEVICE_ID_<alg>_new.pub.pem.")
        var force = false

        @OptionGroup var escrowOptions: BenchEscrowOptions
        @OptionGroup var target: DeviceOptions
        @OptionGroup var output: OutputOptions

        func run() async throws {
            try await DatabaseCommand.run(json: output.json) {
                guard let (id, platform) = try await target.chooseAttached(deviceID) else { throw BenchError.noDevices }
                let publicFile = "\(id)_\(platform.keyAlgorithm.rawValue)_new.pub.pem"
                if !force, try CLI.existsAsReplaceableFile(publicFile) { throw CommandFailure.outputExists(publicFile) }
                let registry = try await escrowOptions.connect(action: "re-key devices")
                let escrow = try escrowOptions.escrow(registry)
                let doctor = KeyDoctor(devices: await target.bench(), escrow: escrow)
                defer { doctor.devices.stop() }
                let productID = try await doctor.registration.product(for: id, given: product)
                let (rekeyed, key) = try await doctor.rekey(deviceID: id, product: productID)
                try CLI.writeNewFile(publicFile, Array(key.pem.utf8), mode: 0o644, force: force)
                let report = try await doctor.register(rekeyed)
                if output.json {
                    var object: [String: Any] = [
                        "deviceID": id, "platform": report.platform, "product": report.product,
                        "fingerprint": report.publicKey.fingerprint, "escrowObjectID": report.escrowObjectID,
                        "found": report.found, "file": publicFile,
                    ]
                    object["registrationID"] = report.registrationID
                    object["supersededRegistrationID"] = report.supersededRegistrationID
                    object["previousFingerprint"] = report.previousFingerprint
                    object["previousEscrowObjectID"] = report.previousEscrowObjectID
                    object["leaveFailure"] = report.leaveFailure
                    CLI.printJSON(object)
                } else {
                    print("New key \(report.publicKey.fingerprint) escrowed, loaded and registered in product \(report.product)"
                          + (report.previousFingerprint.map { "; the key it replaced (\($0)) is escrowed" } ?? ""))
                    if let failure = report.leaveFailure {
                        print("Warning: the device did not leave DFU mode (\(failure)); reset it by hand to start with its new key.")
                    } else {
                        print("Okay!  New keys in place, your device should restart.")
                    }
                }
            }
        }
    }
}

extension BenchKeyError: ReportableError {
    public var kind: String {
        switch self {
        case .noBackup: "noBackup"
        case .productNeeded: "productNeeded"
        case .wrongAlgorithm: "wrongAlgorithm"
        }
    }
    public var message: String { description }
    public var context: [String: String] {
        switch self {
        case .noBackup(let id, let product, let fingerprint): ["device": id, "product": product, "fingerprint": fingerprint]
        case .productNeeded(let id, _), .wrongAlgorithm(let id, _, _): ["device": id]
        }
    }
    public var exit: KeylineExit {
        switch self {
        case .noBackup, .wrongAlgorithm: .dataError
        case .productNeeded: .usage
        }
    }
}
