import ArgumentParser
import CommandReporting
import DeviceKeys

/// `keyline-sim`: simulated Particle devices for stations, tests and demos without hardware.
/// Its own executable, so a station's `keyline` carries none of the simulator.
@main
struct KeylineSim: AsyncParsableCommand {
    /// OpenSSL without its exit-time cleanup before anything else can initialise it: simulated
    /// devices make keys on their own threads while the process exits (OpenSSLRuntime).
    static func main() async {
        OpenSSLRuntime.prepare()
        await Self.main(nil)
    }

    static let configuration = CommandConfiguration(
        commandName: "keyline-sim",
        abstract: "Simulated Particle devices behind the libusb stand-in, a simulated Particle cloud, and synthetic firmware.",
        discussion: KeylineExit.helpText,
        subcommands: [SimServeCommand.self, SimCloudCommand.self, SimMakeFirmwareCommand.self]
    )
}
