import ArgumentParser
import CommandReporting
import ParticlePlatform
import RMABench

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

    var settings: BenchEscrowSettings {
        BenchEscrowSettings(store: store, recipientFiles: recipientFiles, station: station)
    }
}

extension KeysCommand {
    struct Send: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Register a device's public key for a product and upload it to the Particle cloud.",
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

                Then, as particle-cli, the public key is uploaded to the Particle cloud (POST \
                /v1/provisioning/DEVICE_ID) through the registry's cloud outbox, with PARTICLE_ACCESS_TOKEN \
                or PARTICLE_TOKEN_FILE (mode 0600) and PARTICLE_API_URL; without a token it stays queued \
                for `keyline cloud push`. A key the cloud accepted before is not sent again. See \
                `keyline cloud --help` for the cloud's exit codes.

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
                let chosen = try platform.map { name throws(PlatformError) in try Platform.named(name) }
                let request = KeySendRequest(deviceID: deviceID ?? target.device, file: file, product: product, supersede: supersede,
                                             reason: reason, platform: chosen)
                let sent = try await KeySend.send(request, escrow: escrowOptions.settings, bus: target.bus)
                if output.json {
                    var object: [String: Any] = [
                        "deviceID": sent.deviceID, "product": sent.product, "file": sent.file, "fingerprint": sent.registered.fingerprint,
                        "registrationID": sent.registered.id, "escrowObjectID": sent.registered.escrowObjectID,
                    ]
                    object["supersededRegistrationID"] = sent.superseded?.id
                    object["supersededFingerprint"] = sent.superseded?.fingerprint
                    object["cloud"] = sent.cloud.state
                    CLI.printJSON(object)
                } else {
                    print("Registered key \(sent.registered.fingerprint) for device \(sent.deviceID) in product \(sent.product)"
                          + (sent.superseded.map { "; key \($0.fingerprint) superseded" } ?? ""))
                    print(sent.cloud.summary)
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
                finishes it. The doctor's intent (the new key and its backup, the key it replaces) is \
                recorded before the key is written: a doctor stopped after that is found by the next \
                `keys doctor` on the device, which registers the key the device holds instead of making \
                another (or, if the key never reached the device, closes the intent and goes on).

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
                let (report, publicFile) = try await KeyDoctor.run(
                    deviceID: deviceID ?? target.device, product: product, escrow: escrowOptions.settings, bus: target.bus,
                    files: CommandOutputFiles(force: force))
                if output.json {
                    var object: [String: Any] = [
                        "deviceID": report.deviceID, "platform": report.platform, "product": report.product,
                        "fingerprint": report.publicKey.fingerprint, "escrowObjectID": report.escrowObjectID,
                        "found": report.found, "file": publicFile,
                    ]
                    object["registrationID"] = report.registrationID
                    object["supersededRegistrationID"] = report.supersededRegistrationID
                    object["previousFingerprint"] = report.previousFingerprint
                    object["previousEscrowObjectID"] = report.previousEscrowObjectID
                    object["leaveFailure"] = report.leaveFailure
                    object["cloud"] = report.cloud?.state
                    object["finishedInterrupted"] = report.finishedInterrupted
                    CLI.printJSON(object)
                } else {
                    if report.finishedInterrupted {
                        print("An interrupted keys doctor on this device loaded key \(report.publicKey.fingerprint); it is now registered")
                    }
                    print("New key \(report.publicKey.fingerprint) escrowed, loaded and registered in product \(report.product)"
                          + (report.previousFingerprint.map { "; the key it replaced (\($0)) is escrowed" } ?? ""))
                    if let cloud = report.cloud { print(cloud.summary) }
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
