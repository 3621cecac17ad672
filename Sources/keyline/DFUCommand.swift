import ArgumentParser
import Foundation
import ParticleDevice
import USB
import CommandReporting

/// `keyline dfu …`: direct DfuSe access to one device over USB, for the bench and for debugging
/// (what dfu-util does, with Particle's identity checks and typed errors).
struct DFUCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dfu",
        abstract: "Read, write and switch modes of one device over USB (DfuSe).",
        discussion: """
            Pick the device with --serial (its device ID) or --port (e.g. 1-2.3, as `keyline devices` \
            shows it); with neither, exactly one device must be attached.

            Exit codes: 0 done, 64 bad option (e.g. --timeout outside 0–600 s) or range outside the alt's \
            memory layout, 66 input file unreadable, \
            69 device not found, busy, disconnected or protected, 73 output file exists (use --force), \
            76 the device reported a DFU error or the read-back differs, 77 USB access denied (udev rule).
            """,
        subcommands: [DFUEnterCommand.self, DFUReadCommand.self, DFUWriteCommand.self, DFULeaveCommand.self])
}

/// Which device a `keyline dfu` command acts on.
struct DeviceSelection: ParsableArguments {
    @Option(help: "The device ID (USB serial number).")
    var serial: String?

    @Option(help: "The USB port path, e.g. 1-2.3.")
    var port: String?

    @OptionGroup var output: OutputOptions

    var devices: USBDeviceSelection { USBDeviceSelection(serial: serial, port: port) }

    /// Opens the selected device, which must be in DFU mode, as a Particle DFU device.
    func openDFU(in context: USBContext) async throws -> ParticleDFUDevice {
        let (device, info) = try await devices.openInDFUMode(in: context)
        return try await ParticleDFUDevice.open(device, port: info.portPath)
    }

    func report(_ fields: [String: String], human: String) {
        if output.json { CLI.printJSON(fields) } else { print(human) }
    }
}

struct DFUEnterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enter",
        abstract: "Switch a normal-mode device to DFU mode and wait for it to re-enumerate.",
        discussion: """
            Sends Device OS control request DFU_MODE (50), then finds the same serial again with the platform's DFU \
            product ID. A device already in DFU mode is left as it is (exit 0, "already in DFU mode").
            """)

    @OptionGroup var selection: DeviceSelection

    @Option(help: "Seconds to wait for the device to come back in DFU mode (more than 0, at most \(Int(Self.maximumTimeout)).")
    var timeout: Double = 10

    /// Ten minutes: far beyond any re-enumeration (about a second), small enough to stay a Duration.
    static let maximumTimeout: Double = 600

    func validate() throws {
        // Also rejects inf and nan, which would trap when converted to a Duration.
        guard timeout.isFinite, timeout > 0, timeout <= Self.maximumTimeout else {
            throw ValidationError("--timeout must be more than 0 and at most \(Int(Self.maximumTimeout)) seconds, not \(timeout)")
        }
    }

    func run() async throws {
        try await CLI.run(json: selection.output.json) {
            let context = await USBContext.make()
            let (transport, info) = try await selection.devices.open(in: context)
            let alreadyInDFU = info.mode == .dfu
            // The context finds the device again with a watcher of its own; the handle it opens
            // holds the DFU interface until this process exits.
            let device = try await ParticleModeSwitch.enterDFU(transport, identity: info.identity, locator: context,
                                                               timeout: .milliseconds(Int((timeout * 1000).rounded(.up))))
            let port = device.port?.description ?? "?"
            selection.report(
                ["deviceID": device.deviceID, "platform": device.platform.name, "port": port, "mode": "dfu",
                 "productID": String(device.dfu.device.productID, radix: 16), "alreadyInDFU": alreadyInDFU ? "true" : "false"],
                human: "\(device.deviceID) (\(device.platform.name)) " + (alreadyInDFU ? "is already in DFU mode" : "is in DFU mode")
                    + " on port \(port)")
        }
    }
}

struct DFUReadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "read",
        abstract: "Read memory of one alt setting to a new file (DfuSe upload).",
        discussion: "The file is created with mode 0600 (a DCT read may hold a private key) and never overwritten unless --force.")

    @OptionGroup var selection: DeviceSelection

    @Option(help: "Alternate setting: 0 internal flash, 1 DCT, 2 external flash.")
    var alt: UInt8

    @Option(help: "Start address (0x… or decimal).")
    var address: String

    @Option(help: "Number of bytes (0x… or decimal).")
    var length: String

    @Option(name: .shortAndLong, help: "File to create.")
    var output: String

    @Flag(help: "Replace the output file if it exists.")
    var force = false

    func run() async throws {
        try await CLI.run(json: selection.output.json) {
            let start = try MemoryNumber.parse(address, what: "address"), count = try MemoryNumber.parse(length, what: "length")
            if !force && FileManager.default.fileExists(atPath: output) { throw CommandFailure.outputExists(output) }
            let device = try await selection.openDFU(in: await USBContext.make())
            let bytes = try await device.read(alt: alt, address: start, length: Int(count))
            try CLI.writeNewFile(output, bytes, mode: 0o600, force: force)
            selection.report(["deviceID": device.deviceID, "alt": "\(alt)", "address": address, "bytes": "\(bytes.count)", "file": output],
                             human: "read \(bytes.count) bytes from \(device.deviceID) alt \(alt) at \(address) into \(output)")
        }
    }
}

struct DFUWriteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "write",
        abstract: "Write a file to one alt setting (erases only the sectors it covers, then verifies).")

    @OptionGroup var selection: DeviceSelection

    @Option(help: "Alternate setting: 0 internal flash, 1 DCT, 2 external flash.")
    var alt: UInt8

    @Option(help: "Start address (0x… or decimal).")
    var address: String

    @Flag(name: .customLong("no-verify"), help: "Skip reading the data back.")
    var noVerify = false

    @Flag(help: "Leave DFU mode afterwards (the device starts its application).")
    var leave = false

    @Argument(help: "The file to write.")
    var file: String

    func run() async throws {
        try await CLI.run(json: selection.output.json) {
            let start = try MemoryNumber.parse(address, what: "address")
            let bytes = try CLI.readFile(file)
            let device = try await selection.openDFU(in: await USBContext.make())
            try await device.write(alt: alt, address: start, bytes: bytes, verify: !noVerify)
            if leave { try await device.leave() }
            selection.report(["deviceID": device.deviceID, "alt": "\(alt)", "address": address, "bytes": "\(bytes.count)",
                              "verified": noVerify ? "no" : "yes"],
                             human: "wrote \(bytes.count) bytes of \(file) to \(device.deviceID) alt \(alt) at \(address)"
                                + (noVerify ? "" : ", verified") + (leave ? "; left DFU mode" : ""))
        }
    }
}

struct DFULeaveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "leave",
        abstract: "Leave DFU mode: the device resets into its application.")

    @OptionGroup var selection: DeviceSelection

    func run() async throws {
        try await CLI.run(json: selection.output.json) {
            let device = try await selection.openDFU(in: await USBContext.make())
            try await device.leave()
            selection.report(["deviceID": device.deviceID, "mode": "normal"], human: "\(device.deviceID) left DFU mode")
        }
    }
}
