import ArgumentParser
import DFU
import DeviceBus
import ParticlePlatform
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

            Exit codes: 0 stopped by a signal, 64 bad --fleet/--hub/--cloud-delay/--faults/--mode/--time-scale, 74 the socket could not be \
            served or the state could not be read or saved.
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

    func run() async throws {
        try await CLI.run(json: false) {
            // Everything is checked and the socket bound before any simulated device exists: a
            // device boots on its own queue (and may be generating a key with OpenSSL), and a
            // process exiting under it would race OpenSSL's exit-time cleanup.
            let plan = try SimulatorFleetSpec.plan(spec: self.fleet, mode: mode, timeScale: timeScale, faults: faults, protected: protected,
                                                   hub: hub)
            let planned = plan.devices
            let cloud = try SimulatorFleetSpec.parseCloudDelay(cloudDelay)
            let denied = try Set((denyAccess ?? "").split(separator: ",").map { try SimulatorFleetSpec.parsePort(String($0)) })
            let fleet = try SimulatedFleet(timeScale: timeScale, directory: state.map { URL(fileURLWithPath: $0) }, seed: seed,
                                           autosave: state != nil, hubs: plan.hubs, cloudConnection: cloud)
            let server = StandInServer(socketPath: socket, fleet: fleet, accessDenied: denied)
            try server.start()
            if fleet.allDevices.isEmpty {
                for device in planned {
                    try fleet.add(device.platform, at: device.port, mode: device.mode, protected: device.protected, faults: device.faults)
                }
            }
            // Unbuffered: whoever started us (a test, a script) sees the lines at once.
            func say(_ line: String) { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }
            for (port, device) in fleet.allDevices {
                say("\(port)\t\(device.platform.name)\t\(device.currentMode.rawValue)\t\(device.deviceID)")
            }
            say("serving \(fleet.allDevices.count) simulated devices on \(socket); stop with Ctrl-C")
            let signal = await SignalWait.next([SIGINT, SIGTERM])
            server.stop()
            if let limit = fleet.deviceBoundLimit, timeScale > 0 {
                let seconds = Double(limit.time.components.seconds) + Double(limit.time.components.attoseconds) / 1e18
                say("device-bound limit \(String(format: "%.3f", seconds)) s modelled (slowest device \(limit.port), bus included)")
            }
            if state != nil {
                await fleet.waitForPendingSaves()
                try fleet.save()
            }
            say("stopped by signal \(signal)")
            // Devices may still be busy on their own queues (booting, generating a key): leave
            // without exit-time destructors rather than tear OpenSSL down under them. Output was
            // written unbuffered and the state is saved.
            _exit(0)
        }
    }
}

/// Parsing `--fleet`, `--mode` and `--faults` into a fleet.
enum SimulatorFleetSpec {
    static func specError(_ description: String) -> CommandFailure {
        CommandFailure(kind: "usage", message: description, exit: .usage)
    }

    /// The largest --time-scale and slowdown: a 1000× slower device already takes minutes per
    /// transfer; larger products of the two would overflow the delay arithmetic.
    static let maximumFactor: Double = 1000

    /// One device `--fleet` asks for.
    struct PlannedDevice {
        var platform: Platform
        var port: USBPortPath
        var mode: USBMode
        var protected: Bool
        var faults: SimulatedFaults
    }

    /// The devices `--fleet` asks for and the kind of each hub they hang off.
    struct FleetPlan {
        var devices: [PlannedDevice]
        var hubs: [USBPortPath: HubKind]
    }

    /// Checks every option and lists the devices to create. Hubs are numbered in order: each
    /// `--fleet` item gets the next hub (1-N, ports 1-N.1, 1-N.2, …), or, with `@hub=KIND/PORTS`,
    /// as many PORTS-port hubs as its devices need.
    static func plan(spec: String, mode: String, timeScale: Double, faults: String?, protected: String?,
                     hub: String = HubKind.default.rawValue) throws -> FleetPlan {
        // Finite and bounded: delays are computed as Durations and DispatchTimes, which trap on
        // inf, nan or a product beyond Int64 nanoseconds.
        guard timeScale.isFinite, timeScale >= 0, timeScale <= maximumFactor else {
            throw specError("--time-scale must be between 0 and \(Int(maximumFactor)), not \(timeScale)")
        }
        guard let usbMode = USBMode(rawValue: mode) else { throw specError("--mode must be normal or dfu, not \(mode)") }
        guard let defaultHub = HubKind(rawValue: hub) else { throw specError("--hub must be single or multi, not \(hub)") }
        let faultPlan = try parseFaults(faults ?? "")
        let protectedPorts = try protected.map { text in
            text == "all" ? nil : Set(try text.split(separator: ",").map { try parsePort(String($0)) })
        }
        var plan = FleetPlan(devices: [], hubs: [:])
        var nextHub = 1
        for item in spec.split(separator: ",") {
            let (platformName, count, kind, portsPerHub, itemMode) = try parseItem(item, defaultHub: defaultHub)
            let platform = try Platform.named(platformName)
            guard SimulatedHardware.forPlatform(platform) != nil else { throw SimulatorError.unsupportedPlatform(platform.name) }
            let perHub = portsPerHub ?? count
            guard nextHub + (count - 1) / perHub < 127 else { throw specError("--fleet needs more than 126 hubs") }
            for index in 0..<count {
                let hubPath = USBPortPath(bus: 1, ports: [UInt8(nextHub + index / perHub)])
                plan.hubs[hubPath] = kind
                let port = USBPortPath(bus: 1, ports: hubPath.ports + [UInt8(index % perHub + 1)])
                let isProtected = protectedPorts.map { $0 == nil || $0!.contains(port) } ?? false
                plan.devices.append(PlannedDevice(platform: platform, port: port, mode: itemMode ?? usbMode, protected: isProtected,
                                                  faults: faultPlan.faults(for: port)))
            }
            nextHub += (count + perHub - 1) / perHub
        }
        return plan
    }

    /// `PLATFORM:COUNT[:MODE][@hub=single|multi[/PORTS]]`; MODE (normal or dfu) overrides --mode for
    /// this item (a mixed line: some devices in DFU mode, some not).
    static func parseItem(_ item: Substring, defaultHub: HubKind) throws -> (String, Int, HubKind, Int?, USBMode?) {
        let usage = "--fleet item \"\(item)\" is not PLATFORM:COUNT[:MODE][@hub=single|multi[/PORTS]] (e.g. boron:8, photon:4:dfu or photon:64@hub=single/16)"
        let halves = item.split(separator: "@", maxSplits: 1, omittingEmptySubsequences: false)
        let parts = halves[0].split(separator: ":")
        guard parts.count == 2 || parts.count == 3, let count = Int(parts[1]), count > 0, count <= 127 * 126 else { throw specError(usage) }
        var mode: USBMode?
        if parts.count == 3 {
            guard let parsed = USBMode(rawValue: String(parts[2])) else {
                throw specError("--fleet item \"\(item)\": the mode must be normal or dfu, not \(parts[2])")
            }
            mode = parsed
        }
        var kind = defaultHub
        var ports: Int?
        if halves.count == 2 {
            guard halves[1].hasPrefix("hub=") else { throw specError(usage) }
            let value = halves[1].dropFirst(4).split(separator: "/", omittingEmptySubsequences: false)
            guard let parsed = HubKind(rawValue: String(value[0])), value.count <= 2 else { throw specError(usage) }
            kind = parsed
            if value.count == 2 {
                guard let n = Int(value[1]), n > 0, n <= 127 else { throw specError(usage) }
                ports = n
            }
        }
        guard (ports ?? count) <= 127 else { throw specError("--fleet item \"\(item)\": a hub has at most 127 ports; add /PORTS") }
        return (String(parts[0]), count, kind, ports, mode)
    }

    /// `--cloud-delay`: modelled seconds, or "never".
    static func parseCloudDelay(_ text: String) throws -> SimulatedDevice.CloudConnection {
        if text == "never" { return .never }
        guard let seconds = Double(text), seconds.isFinite, seconds >= 0, seconds <= 86_400 else {
            throw specError("--cloud-delay must be seconds (0 to 86400) or never, not \(text)")
        }
        return .after(.milliseconds(seconds * 1000))
    }

    struct FaultPlan {
        var everywhere = SimulatedFaults.none
        var randomSeed: UInt64?
        var byPort: [USBPortPath: SimulatedFaults] = [:]

        func faults(for port: USBPortPath) -> SimulatedFaults {
            if let specific = byPort[port] { return specific }
            if let randomSeed {
                return .random(seed: port.ports.reduce(randomSeed &+ UInt64(port.bus)) { $0 &* 131 &+ UInt64($1) })
            }
            return everywhere
        }
    }

    static func parseFaults(_ spec: String) throws -> FaultPlan {
        var plan = FaultPlan()
        for item in spec.split(separator: ",") {
            var text = Substring(item)
            var port: USBPortPath?
            if let at = text.firstIndex(of: "@") {
                port = try parsePort(String(text[..<at]))
                text = text[text.index(after: at)...]
            }
            let pair = text.split(separator: "=", maxSplits: 1).map(String.init)
            // "1-2.1@" has a port and no fault: the item is empty, not index 0 of nothing.
            guard let name = pair.first else { throw specError("--faults item \"\(item)\" names no fault after the port") }
            var faults = port.flatMap { plan.byPort[$0] } ?? plan.everywhere
            func number<T: LosslessStringConvertible>(_ type: T.Type) throws -> T {
                guard pair.count == 2, let value = T(pair[1]) else { throw specError("--faults item \"\(item)\" needs a number") }
                return value
            }
            switch name {
            case "disconnect-after": faults.disconnectAfterTransfers = try number(Int.self)
            case "stall": faults.stallTransfer = try number(Int.self)
            case "slowdown":
                let factor = try number(Double.self)
                guard factor.isFinite, factor > 0, factor <= maximumFactor else {
                    throw specError("--faults item \"\(item)\": slowdown must be more than 0 and at most \(Int(maximumFactor))")
                }
                faults.slowdown = factor
            case "no-reenumerate": faults.noReenumerationAfterLeave = true
            case "fail-op":
                let values = pair.count == 2 ? pair[1].split(separator: ":") : []
                guard values.count == 2, let n = Int(values[0]), let code = UInt8(values[1]), let status = DFUStatusCode(rawValue: code) else {
                    throw specError("--faults item \"\(item)\" is not fail-op=N:STATUS")
                }
                faults.failOperation = .init(number: n, status: status)
            case "random":
                plan.randomSeed = try number(UInt64.self)
                continue
            default:
                throw specError("unknown fault \"\(name)\" (disconnect-after, stall, fail-op, slowdown, no-reenumerate, random)")
            }
            if let port { plan.byPort[port] = faults } else { plan.everywhere = faults }
        }
        return plan
    }

    /// "1-2.3" → bus 1, ports [2, 3].
    static func parsePort(_ text: String) throws -> USBPortPath {
        let halves = text.split(separator: "-", maxSplits: 1)
        guard halves.count == 2, let bus = UInt8(halves[0]) else { throw specError("\"\(text)\" is not a port path like 1-2.3") }
        let ports = halves[1].split(separator: ".").compactMap { UInt8($0) }
        guard !ports.isEmpty, ports.count == halves[1].split(separator: ".").count else {
            throw specError("\"\(text)\" is not a port path like 1-2.3")
        }
        return USBPortPath(bus: bus, ports: ports)
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
