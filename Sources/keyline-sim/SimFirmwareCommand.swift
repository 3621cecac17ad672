import ArgumentParser
import Foundation
import ParticlePlatform
import Simulator
import CommandReporting

/// `keyline-sim make-firmware`: synthetic module binaries for the demo and the tests (real
/// Particle binaries cannot ship with keyline).
struct SimMakeFirmwareCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "make-firmware",
        abstract: "Write a synthetic Particle firmware module (valid prefix, suffix and CRC-32).",
        discussion: """
            The image has the module prefix, suffix, SHA-256 and CRC-32 of a real Device OS build, at \
            the real address and (without --size) the real size of that module for the platform; the \
            rest is filler. Pipelines, `keyline provision` and the platform check treat it like a real \
            binary. Functions: system, user, bootloader, radio-stack (Gen3 SoftDevice). Indexes follow \
            Device OS: Photon system 1–2, Electron system 1–3, Gen3 user 2 (0xB4000, 256 KB) or 1 \
            (0xD4000, 128 KB compat).

              keyline-sim make-firmware --platform boron --function user --index 2 -o boron-user.bin

            \(KeylineExit.helpText)
            """)

    @Option(help: "Platform the module is built for (name or platform ID).")
    var platform: String

    @Option(help: "Module function: system, user, bootloader, radio-stack, …")
    var function: String

    @Option(help: "Module index (system part number; user part 1 or 2).")
    var index: UInt8

    @Option(help: "File size in bytes (default: a real module's size).")
    var size: Int?

    @Option(name: .shortAndLong, help: "Output file.")
    var output: String

    @Flag(help: "Replace an existing output file.")
    var force = false

    @OptionGroup var options: OutputOptions

    func run() async throws {
        try await CLI.run(json: options.json) {
            let target = try Platform.named(platform)
            guard let moduleFunction = ModuleFunction(name: function) else {
                throw CommandFailure(kind: "usage", message: "unknown module function '\(function)'; use one of "
                                     + ModuleFunction.allCases.map(\.name).joined(separator: ", "), exit: .usage)
            }
            let bytes: [UInt8]
            do {
                bytes = try SyntheticFirmware.build(platform: target, function: moduleFunction, index: index, size: size)
            } catch {
                throw CommandFailure(kind: "usage", message: "\(error)", exit: .usage)
            }
            let module = try FirmwareModule.parse(bytes)
            try CLI.writeNewFile(output, bytes, mode: 0o644, force: force)
            let address = "0x" + String(module.startAddress, radix: 16)
            if options.json {
                CLI.printJSON(["file": output, "platform": target.name, "function": moduleFunction.name, "index": Int(index),
                               "size": bytes.count, "address": address, "version": Int(module.version),
                               "crc32": String(format: "%08x", module.crc32)])
            } else {
                print("\(output): \(target.name) \(moduleFunction.name) module \(index), \(bytes.count) bytes at \(address)")
            }
        }
    }
}
