import DeviceBus
import DFU
import ParticlePlatform

/// A simulated line as `keyline-sim serve` describes it (`--fleet`, `--mode`, `--hub`, `--faults`,
/// `--protected`, `--cloud-delay`): which devices on which hub ports, with which faults. Every value
/// is checked (bounded, finite) before a device exists.
public enum FleetSpec {
    static func specError(_ description: String) -> FleetSpecError { FleetSpecError(description: description) }

    /// The largest --time-scale and slowdown: a 1000× slower device already takes minutes per
    /// transfer; larger products of the two would overflow the delay arithmetic.
    public static let maximumFactor: Double = 1000

    /// One device `--fleet` asks for.
    public struct PlannedDevice: Sendable {
        public var platform: Platform
        public var port: USBPortPath
        public var mode: USBMode
        public var protected: Bool
        public var faults: SimulatedFaults
    }

    /// The devices `--fleet` asks for and the kind of each hub they hang off.
    public struct FleetPlan: Sendable {
        public var devices: [PlannedDevice]
        public var hubs: [USBPortPath: HubKind]
    }

    /// Checks every option and lists the devices to create (a malformed option throws
    /// `FleetSpecError`; a platform the simulator lacks, that platform's error). Hubs are numbered in order: each
    /// `--fleet` item gets the next hub (1-N, ports 1-N.1, 1-N.2, …), or, with `@hub=KIND/PORTS`,
    /// as many PORTS-port hubs as its devices need.
    public static func plan(spec: String, mode: String, timeScale: Double, faults: String?, protected: String?,
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
                // Protected Device mode is a Device OS 6.x feature of Gen 3 and later bootloaders
                // (device-os-keys.md, "Protected Device mode"); a Gen 2 device has no such mode.
                if isProtected && platform.generation < 3 {
                    throw specError("--protected: \(platform.name) at \(port) is a Gen \(platform.generation) device; Device Protection exists on Gen 3 and later only (name the Gen 3 ports instead of \"all\")")
                }
                plan.devices.append(PlannedDevice(platform: platform, port: port, mode: itemMode ?? usbMode, protected: isProtected,
                                                  faults: faultPlan.faults(for: port)))
            }
            nextHub += (count + perHub - 1) / perHub
        }
        return plan
    }

    /// `PLATFORM:COUNT[:MODE][@hub=single|multi[/PORTS]]`; MODE (normal or dfu) overrides --mode for
    /// this item (a mixed line: some devices in DFU mode, some not).
    static func parseItem(_ item: Substring, defaultHub: HubKind) throws(FleetSpecError) -> (String, Int, HubKind, Int?, USBMode?) {
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
    public static func parseCloudDelay(_ text: String) throws(FleetSpecError) -> SimulatedDevice.CloudConnection {
        if text == "never" { return .never }
        guard let seconds = Double(text), seconds.isFinite, seconds >= 0, seconds <= 86_400 else {
            throw specError("--cloud-delay must be seconds (0 to 86400) or never, not \(text)")
        }
        return .after(.milliseconds(seconds * 1000))
    }

    public struct FaultPlan: Sendable {
        public var everywhere = SimulatedFaults.none
        public var randomSeed: UInt64?
        public var byPort: [USBPortPath: SimulatedFaults] = [:]

        public func faults(for port: USBPortPath) -> SimulatedFaults {
            if let specific = byPort[port] { return specific }
            if let randomSeed {
                return .random(seed: port.ports.reduce(randomSeed &+ UInt64(port.bus)) { $0 &* 131 &+ UInt64($1) })
            }
            return everywhere
        }
    }

    public static func parseFaults(_ spec: String) throws(FleetSpecError) -> FaultPlan {
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
            func number<T: LosslessStringConvertible>(_ type: T.Type) throws(FleetSpecError) -> T {
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
    public static func parsePort(_ text: String) throws(FleetSpecError) -> USBPortPath {
        let halves = text.split(separator: "-", maxSplits: 1)
        guard halves.count == 2, let bus = UInt8(halves[0]) else { throw specError("\"\(text)\" is not a port path like 1-2.3") }
        let ports = halves[1].split(separator: ".").compactMap { UInt8($0) }
        guard !ports.isEmpty, ports.count == halves[1].split(separator: ".").count else {
            throw specError("\"\(text)\" is not a port path like 1-2.3")
        }
        return USBPortPath(bus: bus, ports: ports)
    }
}

/// A `keyline-sim serve` option that does not describe a line the simulator can build.
public struct FleetSpecError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
}
