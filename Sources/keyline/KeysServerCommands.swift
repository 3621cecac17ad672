import ArgumentParser
import CommandReporting
import ParticlePlatform
import RMABench

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
                let written = try await ServerKeySlotIO.write(
                    keyFile: file, address: address, port: port, device: target.device, on: target.bus, saveTo: outputFile,
                    files: CommandOutputFiles(force: force))
                if output.json {
                    var object = ServerKeySlotReading(blob: written.blob, label: written.platform.name).json
                    object["deviceID"] = written.deviceID
                    object["file"] = outputFile
                    CLI.printJSON(object)
                } else {
                    print("Okay!  New keys in place, your device will not restart. (\(written.blob.url))")
                }
            }
        }
    }
}
