import ArgumentParser
import DeviceBus
import Dispatch
import Foundation
import Simulator
import CommandReporting

/// `keyline-sim serve`: a bus of simulated devices behind the libusb stand-in.
struct SimServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve simulated devices to programs loaded with the libusb stand-in.",
        discussion: """
            Runs until SIGINT or SIGTERM. Programs see the devices as USB devices when they load the \
            stand-in (`make standin` builds .build/standin/libusb-1.0.so.0):

              KEYLINE_SIM_SOCKET=PATH LD_LIBRARY_PATH=.build/standin dfu-util -l
              KEYLINE_SIM_SOCKET=PATH LD_LIBRARY_PATH=.build/standin keyline devices

            --fleet photon:8,boron:8 plugs 8 Photons into hub 1 (ports 1-1.1 … 1-1.8) and 8 Borons \
            into hub 2 (1-2.1 … 1-2.8). An item may name its own mode (photon:4:dfu,photon:4:normal) and its hubs: photon:16@hub=single puts 16 Photons             behind one single-TT hub (all share one 12 Mbit/s full-speed bus); photon:64@hub=multi/16             spreads 64 over four 16-port multi-TT hubs (one 12 Mbit/s bus per port). Items without             @hub use --hub (default multi: a powered industrial hub; see HubKind) with all their devices on             one hub. With --state DIR, devices saved there by an earlier run come \
            back (flash, DCT and keys intact) and --fleet only fills an empty DIR; the state is saved \
            after every attach/detach (so a killed simulator keeps what devices held when they last \
            re-enumerated) and on exit.

            --faults takes comma-separated items, each optionally limited to one port with PORT@: \
            disconnect-after=N, stall=N, fail-op=N:STATUS (a DFU status number), slowdown=X, \
            no-reenumerate, random=SEED (one deterministic fault per device). \
            Example: --faults 1-1.3@stall=20,1-2.1@disconnect-after=100

            Normal-mode devices connect to the cloud --cloud-delay modelled seconds after their             application starts (default 5, or "never"); a blank Gen3 device makes its key only then,             a blank Gen2 device already at boot (followed by a reset). On exit the slowest device's             device-bound modelled time (bus included) is printed.

            With --cloud URL (keyline-sim cloud) each normal-mode device presents its key at its cloud \
            connection: the cloud holding that key → online (breathing cyan), else key mismatch \
            (blinking cyan), retried every 10 modelled seconds and after each re-enumeration; each \
            change is logged here ("cloud PLATFORM ID: …") and `keyline devices` shows it (Device OS \
            control request 300). --factory says how new devices left Particle's factory: keyed (a key \
            the cloud already holds, as Particle ships them; the default with --cloud), blank (the \
            default without), blank:N%, corrupt:N% (the seeds' lost key: the device made a new one the \
            cloud does not hold), combinable: blank:50%,corrupt:10%. serve tells the cloud the factory \
            keys (/sim/factory-keys) before any device connects.

            Exit codes: 0 stopped by a signal, 64 bad --fleet/--hub/--cloud-delay/--faults/--mode/--time-scale/--factory/--cloud, \
            69 the simulated cloud did not answer, 74 the socket could not be served or the state could not be read or saved.
            """)

    @Option(help: "Unix socket to serve on (KEYLINE_SIM_SOCKET for clients).")
    var socket: String

    @Option(help: "Devices per platform, e.g. photon:8,boron:8 or photon:64@hub=single/16.")
    var fleet: String = "photon:1"

    @Option(help: "Hub kind for --fleet items without @hub: single (one TT per hub) or multi (one TT per port).")
    var hub: String = HubKind.default.rawValue

    @Option(name: .customLong("cloud-delay"), help: "Modelled seconds from a normal-mode application's start to its cloud connection, or never.")
    var cloudDelay: String = "5"

    @Option(help: "Mode the devices start in: normal (application running) or dfu.")
    var mode: String = "normal"

    @Option(help: "Folder to load simulated devices from and save them to on exit.")
    var state: String?

    @Option(name: .customLong("time-scale"), help: "Real seconds per simulated second (1 = real time, 0 = no delays; at most 1000).")
    var timeScale: Double = 1

    @Option(help: "Faults to inject (see above).")
    var faults: String?

    @Option(help: "Seed for device IDs.")
    var seed: UInt64 = 0

    @Option(help: "Devices in Particle's Protected Device mode: \"all\" or port paths, e.g. 1-2.1,1-2.3.")
    var protected: String?

    @Option(name: .customLong("deny-access"), help: "Ports this host may list but not open, as with a missing udev rule, e.g. 1-1.2.")
    var denyAccess: String?

    @Option(help: "A simulated cloud (keyline-sim cloud's URL) the devices connect to and check their keys against.")
    var cloud: String?

    @Option(help: "Factory state of new devices: keyed, blank, blank:N%, corrupt:N% (default keyed with --cloud, else blank).")
    var factory: String?

    func run() async throws {
        try await CLI.run(json: false) {
            let plan = try SimulatorFleetSpec.plan(spec: self.fleet, mode: mode, timeScale: timeScale, faults: faults, protected: protected,
                                                   hub: hub)
            let cloud = try SimulatorFleetSpec.parseCloudDelay(cloudDelay)
            let denied = try Set((denyAccess ?? "").split(separator: ",").map { try SimulatorFleetSpec.parsePort(String($0)) })
            let factoryState = try SimulatorFleetSpec.parseFactory(factory ?? (self.cloud == nil ? "blank" : "keyed"))
            // Unbuffered: whoever started us (a test, a script) sees the lines at once.
            @Sendable func say(_ line: String) { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }
            let link = try self.cloud.map { url in SimulatedCloudLink(client: try SimulatedCloudClient(url: url), log: say) }
            let line = try await ServedLine(socket: socket, plan: plan, timeScale: timeScale, stateDirectory: state.map { URL(fileURLWithPath: $0) },
                                            seed: seed, cloudConnection: cloud, accessDenied: denied, cloudLink: link, factory: factoryState)
            let fleet = line.fleet
            for (port, device) in fleet.allDevices {
                say("\(port)\t\(device.platform.name)\t\(device.currentMode.rawValue)\t\(device.deviceID)")
            }
            say("serving \(fleet.allDevices.count) simulated devices on \(socket); stop with Ctrl-C")
            let signal = await SignalWait.next([SIGINT, SIGTERM])
            try await line.stop()
            if let limit = fleet.deviceBoundLimit, timeScale > 0 {
                let seconds = Double(limit.time.components.seconds) + Double(limit.time.components.attoseconds) / 1e18
                say("device-bound limit \(String(format: "%.3f", seconds)) s modelled to the last leave request (slowest device \(limit.port), bus included)")
            }
            say("stopped by signal \(signal)")
            // Devices may still be busy on their own queues (booting, generating a key): leave
            // without exit-time destructors rather than tear OpenSSL down under them. Output was
            // written unbuffered and the state is saved.
            _exit(0)
        }
    }
}

/// `--fleet`, `--faults` and the other fleet options as the simulator reads them (`FleetSpec`),
/// each failure a usage error (exit 64).
enum SimulatorFleetSpec {
    static func plan(spec: String, mode: String, timeScale: Double, faults: String?, protected: String?,
                     hub: String) throws -> FleetSpec.FleetPlan {
        do {
            return try FleetSpec.plan(spec: spec, mode: mode, timeScale: timeScale, faults: faults, protected: protected, hub: hub)
        } catch let error as FleetSpecError {
            throw usageError(error)
        }
    }

    static func parseFaults(_ spec: String) throws -> FleetSpec.FaultPlan {
        try usage { () throws(FleetSpecError) in try FleetSpec.parseFaults(spec) }
    }

    static func parseCloudDelay(_ text: String) throws -> SimulatedDevice.CloudConnection {
        try usage { () throws(FleetSpecError) in try FleetSpec.parseCloudDelay(text) }
    }

    static func parseFactory(_ text: String) throws -> FactoryState {
        try usage { () throws(FleetSpecError) in try FactoryState.parse(text) }
    }

    static func parsePort(_ text: String) throws -> USBPortPath {
        try usage { () throws(FleetSpecError) in try FleetSpec.parsePort(text) }
    }

    private static func usage<T>(_ body: () throws(FleetSpecError) -> T) throws -> T {
        do {
            return try body()
        } catch {
            throw usageError(error)
        }
    }

    private static func usageError(_ error: FleetSpecError) -> CommandFailure {
        CommandFailure(kind: "usage", message: error.description, exit: .usage)
    }
}

/// Waits for one of some signals without a blocked thread: the default action is replaced by a
/// dispatch source while waiting.
enum SignalWait {
    static func next(_ signals: [Int32]) async -> Int32 {
        await withCheckedContinuation { continuation in
            let queue = DispatchQueue(label: "keyline.signals")
            let once = Once()
            // Every source exists before the first can fire: a handler cancels them all, so the
            // array it reads must not still be growing on this thread.
            let sources = signals.map { DispatchSource.makeSignalSource(signal: $0, queue: queue) }
            for (number, source) in zip(signals, sources) {
                Foundation.signal(number, SIG_IGN)
                source.setEventHandler {
                    if once.first() {
                        sources.forEach { $0.cancel() }
                        continuation.resume(returning: number)
                    }
                }
                source.resume()
            }
        }
    }

    private final class Once: @unchecked Sendable {
        private let lock = NSLock()
        private var done = false
        func first() -> Bool { lock.withLock { defer { done = true }; return !done } }
    }
}
