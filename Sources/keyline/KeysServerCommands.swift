import ArgumentParser
import DeviceKeys
import Foundation
import ParticleDevice
import ParticlePlatform
import RMABench
import CommandReporting

extension KeysCommand {
    struct Server: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write the server key and address into the device's DCT.",
            discussion: """
                As `particle keys server [FILE] [OUTPUT] --host H --port N`: FILE is the server's public \
                key (PEM or DER) or a full-size blob; without it, Particle's own server key. The blob \
                (512 bytes at DCT 2082 on TCP platforms, 320 at 3298 on UDP ones, address at +384 / +192, \
                port at address + 66) is written to the device (--device ID, or the only one attached) \
                and read back. With OUTPUT the blob is also saved there (never overwritten without \
                --force). Unlike particle-cli, a PEM key works on the first run (no intermediate .der is \
                made or reused), and a protected device is refused. The device stays in DFU mode.

                \(KeylineExit.helpText)
                """)

        @OptionGroup var target: DeviceOptions

        @Option(help: "Server host: IPv4 address or domain name (max 63 characters).")
        var host: String?

        @Option(help: "Server port (1–65534).")
        var port: UInt16?

        @Flag(help: "Replace an existing OUTPUT file.")
        var force = false

        @OptionGroup var output: OutputOptions

        @Argument(help: "Server public key (PEM/DER) or full-size blob. Default: Particle's cloud key.")
        var file: String?

        @Argument(help: "Also save the blob written to this file.")
        var outputFile: String?

        func run() async throws {
            try await CLI.run(json: output.json) {
                let address = try host.map { host throws(ServerAddressError) in try ServerAddress(host: host) }
                let keyBytes = try file.map { try CLI.readFile($0, limit: KeyFile.maximumFileSize, what: "a server key file") }
                if let outputFile, !force, try CLI.existsAsReplaceableFile(outputFile) {
                    throw CommandFailure.outputExists(outputFile)
                }
                try await target.withDevice { device in
                    if BenchDevices.isProtected(device) { throw DeviceKeyCommandError.protected(deviceID: device.deviceID) }
                    let platform = device.platform
                    let base: ServerKeyBlob.Base
                    if let keyBytes, let file {
                        if keyBytes.count == platform.serverKeySlot.slot.size {
                            base = .blob(keyBytes)
                        } else {
                            do { base = .key(try KeyFile.parse(keyBytes).publicKey) } catch { throw error.about(file: file) }
                        }
                    } else {
                        base = .blob(ParticleServerKeys.defaultBlob(for: platform))
                    }
                    let blob: ServerKeyBlob
                    do {
                        blob = try ServerKeyBlob(platform: platform, base: base, address: address, port: port)
                    } catch {
                        throw file.map { error.about(file: $0) } ?? error.reportable
                    }
                    if let outputFile { try CLI.writeNewFile(outputFile, blob.bytes, mode: 0o644, force: force) }
                    try await device.writeServerKeyBlob(blob)
                    guard try await device.readServerKeyBlob() == blob.bytes else {
                        throw DeviceKeyCommandError.readBackDiffers(deviceID: device.deviceID)
                    }
                    if output.json {
                        var object = AddressReport(blob: blob, label: platform.name).json
                        object["deviceID"] = device.deviceID
                        object["file"] = outputFile
                        CLI.printJSON(object)
                    } else {
                        print("Okay!  New keys in place, your device will not restart. (\(blob.url))")
                    }
                }
            }
        }
    }
}

extension KeysCommand.Address {
    /// The device's server key slot, decoded (a blank slot: the device uses its built-in key).
    static func read(_ device: ParticleDFUDevice) async throws -> (deviceID: String, address: AddressReport) {
        if BenchDevices.isProtected(device) { throw DeviceKeyCommandError.protected(deviceID: device.deviceID) }
        let bytes = try await device.readServerKeyBlob()
        let platform = device.platform
        do {
            let blob = try ServerKeyBlob(decoding: bytes, cloudProtocol: platform.cloudProtocol, slot: platform.serverKeySlot)
            return (device.deviceID, AddressReport(blob: blob, label: platform.name))
        } catch ServerKeyBlobError.blank {
            return (device.deviceID, AddressReport(blank: platform, label: platform.name))
        }
    }
}
