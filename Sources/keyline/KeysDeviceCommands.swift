import ArgumentParser
import DeviceKeys
import Foundation
import ParticleDevice
import ParticlePlatform
import RMABench
import USB
import CommandReporting

/// The device options of `keyline keys` device commands (particle-cli's `executeWithUsbDevice`).
struct DeviceOptions: ParsableArguments {
    @Option(help: "Device ID; default: the only device attached (several attached is an error listing them).")
    var device: String?

    @Option(help: "Seconds to wait for the device to come back in DFU mode.")
    var timeout: Double = 20

    /// The station's bus, with this command's timeout.
    func bench() async -> BenchDevices {
        BenchDevices(bus: await USBContext.make(), timeout: .milliseconds(Int((timeout * 1000).rounded(.up))))
    }

    /// The chosen device's ID and platform (from its USB ID), without opening it; nil when no
    /// --device was given and nothing is attached.
    func chooseAttached(_ positional: String? = nil) async throws -> (deviceID: String, platform: Platform)? {
        let bench = await bench()
        defer { bench.stop() }
        do {
            return try await bench.choose(positional ?? device)
        } catch BenchError.noDevices {
            return nil
        }
    }

    /// Chooses the device, opens it in DFU mode and runs `body` with it; the handle is given back after.
    func withDevice<T>(_ positional: String? = nil, _ body: (ParticleDFUDevice) async throws -> T) async throws -> T {
        let bench = await bench()
        defer { bench.stop() }
        let (id, _) = try await bench.choose(positional ?? device)
        let opened = try await bench.openDFU(id)
        do {
            let result = try await body(opened)
            await BenchDevices.close(opened)
            return result
        } catch {
            await BenchDevices.close(opened)
            throw error
        }
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
                try await target.withDevice { device in
                    let base = New.filenameWithoutExtension(name ?? device.deviceID)
                    let files = try await Self.save(device, base: base, force: force)
                    if output.json {
                        CLI.printJSON(["deviceID": device.deviceID, "files": files.0, "fingerprint": files.1])
                    } else {
                        print("Saved existing key to \(files.0[0])")
                    }
                }
            }
        }

        /// Writes `<base>.der` and `<base>.pub.pem`; returns the file names and the fingerprint.
        static func save(_ device: ParticleDFUDevice, base: String, force: Bool) async throws -> ([String], String) {
            let files = ["\(base).der", "\(base).pub.pem"]
            if !force, let existing = try files.first(where: { try CLI.existsAsReplaceableFile($0) }) {
                throw CommandFailure.outputExists(existing)
            }
            let (slot, key) = try await DeviceKeySlotIO.save(device)
            try CLI.writeNewFile(files[0], slot, mode: 0o600, force: force)
            try CLI.writeNewFile(files[1], Array(key.publicKey.pem.utf8), mode: 0o644, force: force)
            return (files, key.publicKey.fingerprint)
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
                try await target.withDevice { device in
                    let base = New.filenameWithoutExtension(name ?? device.deviceID)
                    let file = "\(base).der"
                    let bytes = try CLI.readFile(file, limit: KeyFile.maximumFileSize, what: "a key file")
                    let key: DevicePrivateKey
                    do {
                        guard let parsed = try KeyFile.parse(bytes).privateKey else { throw DeviceKeyError.notAPrivateKey }
                        key = parsed
                        try device.platform.checkDeviceKey(key)
                    } catch { throw error.about(file: file) }
                    // The backup first, named as particle-cli names it; never overwritten.
                    let slot = try await device.readPrivateKeySlot()
                    let backup = "backup_\(device.platform.keyAlgorithm.rawValue)_\((base as NSString).lastPathComponent).der"
                    try CLI.writeNewFile(backup, slot, mode: 0o600, force: false)
                    if case .key(let held) = DeviceKeySlotContent(slot: slot) {
                        try CLI.writeNewFile(String(backup.dropLast(".der".count)) + ".pub.pem",
                                             Array(held.publicKey.pem.utf8), mode: 0o644, force: false)
                    }
                    try await DeviceKeySlotIO.load(key, into: device, replacing: DeviceKeySlotIO.expectation(slot))
                    if output.json {
                        CLI.printJSON(["deviceID": device.deviceID, "file": file, "backup": backup,
                                       "fingerprint": key.publicKey.fingerprint])
                    } else {
                        print("Saved existing key to \(backup)")
                        print("Key \(file) written to device")
                    }
                }
            }
        }
    }
}

extension DeviceKeyCommandError: ReportableError {
    public var kind: String {
        switch self {
        case .noKey: "noKeyOnDevice"
        case .protected: "deviceProtected"
        case .readBackDiffers: "readBackDiffers"
        }
    }
    public var message: String { description }
    public var exit: KeylineExit {
        switch self {
        case .noKey: .dataError
        case .protected: .unavailable
        case .readBackDiffers: .protocolError
        }
    }
}
