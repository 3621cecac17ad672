import ArgumentParser
import CommandReporting
import RMABench
import USB

/// The device options of `keyline keys` device commands (particle-cli's `executeWithUsbDevice`).
struct DeviceOptions: ParsableArguments {
    @Option(help: "Device ID; default: the only device attached (several attached is an error listing them).")
    var device: String?

    @Option(help: "Seconds to wait for the device to come back in DFU mode.")
    var timeout: Double = 20

    /// The station's USB, with this command's timeout.
    var bus: BenchBus { .usb(timeoutSeconds: timeout) }
}

extension BenchBus {
    /// The station's USB (libusb), opened for each use.
    static func usb(timeoutSeconds: Double) -> BenchBus {
        BenchBus(timeoutSeconds: timeoutSeconds) { await USBContext.make() }
    }
}

/// Files a bench command writes, under the command line's rules: an existing file is replaced
/// only with --force (and only a regular file), private key material is created with mode 0600.
struct CommandOutputFiles: BenchOutputFiles {
    var force: Bool

    func requireWritable(_ path: String) throws {
        if !force, try CLI.existsAsReplaceableFile(path) { throw CommandFailure.outputExists(path) }
    }

    func write(_ path: String, _ bytes: [UInt8], secret: Bool) throws {
        try CLI.writeNewFile(path, bytes, mode: secret ? 0o600 : 0o644, force: force)
    }
}

extension KeysCommand {
    struct Save: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Save the device's key slot to NAME.der (the whole slot) and NAME.pub.pem.",
            discussion: """
                As `particle keys save`: NAME defaults to the device ID; NAME.der is the raw slot (612 bytes \
                on TCP platforms, 192 on UDP ones, the key's DER then whatever follows it); NAME.pub.pem is \
                its public key. Existing files are never overwritten without --force. Unlike particle-cli, \
                a failed read, a blank or corrupt slot is an error and no file is left behind.

                \(KeylineExit.helpText)
                """)

        @OptionGroup var target: DeviceOptions
        @Flag(help: "Replace existing NAME.der / NAME.pub.pem.") var force = false
        @OptionGroup var output: OutputOptions
        @Argument(help: "File name (a trailing .der/.pem is dropped). Default: the device ID.") var name: String?

        func run() async throws {
            try await CLI.run(json: output.json) {
                let saved = try await DeviceKeySlotIO.save(device: target.device, on: target.bus, name: name,
                                                           to: CommandOutputFiles(force: force))
                if output.json {
                    CLI.printJSON(["deviceID": saved.deviceID, "files": saved.files, "fingerprint": saved.fingerprint])
                } else {
                    print("Saved existing key to \(saved.files[0])")
                }
            }
        }
    }

    struct Load: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write NAME.der into the device's key slot, after saving what it held.",
            discussion: """
                As `particle keys load`: NAME defaults to the device ID and NAME.der must exist. First the \
                slot is saved to backup_<alg>_<NAME>.der (+ .pub.pem; an existing backup is never \
                overwritten: move it away first); then the key is written — only over exactly what was \
                backed up — and read back. PEM and PKCS#8 keys are accepted and written as PKCS#1 (RSA) or \
                SEC1 (EC) DER, so OpenSSL 3 keys are never truncated. The device stays in DFU mode.

                \(KeylineExit.helpText)
                """)

        @OptionGroup var target: DeviceOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "Key file (a trailing .der/.pem is dropped and .der used). Default: the device ID.") var name: String?

        func run() async throws {
            try await CLI.run(json: output.json) {
                // A backup is never replaced: there is no --force here.
                let loaded = try await DeviceKeySlotIO.load(device: target.device, on: target.bus, name: name,
                                                            backups: CommandOutputFiles(force: false))
                if output.json {
                    CLI.printJSON(["deviceID": loaded.deviceID, "file": loaded.file, "backup": loaded.backup,
                                   "fingerprint": loaded.fingerprint])
                } else {
                    print("Saved existing key to \(loaded.backup)")
                    print("Key \(loaded.file) written to device")
                }
            }
        }
    }
}
