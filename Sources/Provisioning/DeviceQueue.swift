import DeviceBus
import Foundation
import ParticlePlatform

/// A device ready for a task: its ID, platform and where it was seen.
struct QueuedDevice: Sendable {
    let deviceID: String
    let platform: Platform
    let port: USBPortPath
}

/// Decides which bus arrivals become device tasks: the pipeline's platform and selection, each
/// device once at a time (a device re-enumerating during its own run is not a new device), a
/// failed device again after it was unplugged and plugged back, at most `limit` in all.
final class DeviceQueue: @unchecked Sendable {
    let devices: AsyncStream<QueuedDevice>
    private let continuation: AsyncStream<QueuedDevice>.Continuation
    private let definition: PipelineDefinition
    private let emit: ProvisioningEventSink
    private let jobID: Int64
    private let refusals: PortRefusals?
    private let lock = NSLock()
    private var limit: Int?
    private var awaited: Set<String> = []  // resume: the job's unfinished devices not seen yet
    private var active: Set<String> = []   // queued or running
    private var retryable: Set<String> = [] // failed, eligible again once unplugged
    private var ended: Set<String> = []     // finished (done, skipped, failed and still attached)
    private var ignoredPorts: Set<String> = []
    private var refusedPorts: Set<String> = []  // not permitted, said once per arrival
    private var skippedReports: [DeviceReport] = []
    /// Devices seen and left alone (another platform, not a device ID).
    var skipped: [DeviceReport] { lock.withLock { skippedReports } }
    private var started = 0
    private var closed = false

    init(definition: PipelineDefinition, limit: Int?, emit: @escaping ProvisioningEventSink, jobID: Int64,
         refusals: PortRefusals? = nil) {
        (devices, continuation) = AsyncStream.makeStream(of: QueuedDevice.self)
        self.definition = definition
        self.limit = limit
        self.emit = emit
        self.jobID = jobID
        self.refusals = refusals
    }

    /// Device IDs a resumed job waits for (without `--wait`, until they all arrived or a timeout).
    func await(_ deviceIDs: [String]) {
        lock.withLock { awaited = Set(deviceIDs) }
    }

    var awaitsNone: Bool { lock.withLock { awaited.isEmpty } }

    func offer(_ device: BusDevice) {
        let identity = device.identity
        guard let (platform, _) = Platform.matching(vendorID: identity.vendorID, productID: identity.productID) else { return }
        let port = identity.port
        let serial = identity.serialNumber?.lowercased() ?? ""
        var skip: DeviceReport?
        var refused = false
        let queued: QueuedDevice? = lock.withLock {
            guard !closed else { return nil }
            // Outside the jig's ports: left alone, whoever it is (the serial is what enumeration read).
            if let ports = definition.ports, !ports.permits(portPath: port.description) {
                guard refusedPorts.insert(port.description).inserted else { return nil }
                refused = true
                skip = DeviceReport(port: port.description, deviceID: platform.isValidDeviceID(serial) ? serial : nil,
                                    platform: platform.name, outcome: .skipped, state: nil, fingerprint: nil,
                                    reason: PortRefusals.reason(port: port.description), failureClass: nil,
                                    failedStep: nil, steps: [], seconds: 0)
                skippedReports.append(skip!)
                return nil
            }
            guard !active.contains(serial), !ended.contains(serial) else { return nil }
            if let serials = definition.selection.serials, !serials.contains(serial) { return nil }
            if let ports = definition.selection.ports, !ports.contains(port.description) { return nil }
            if platform != definition.platform || !platform.isValidDeviceID(serial) {
                // Said once per port, not on every re-enumeration of a device that is not ours.
                guard ignoredPorts.insert(port.description).inserted else { return nil }
                let reason = platform != definition.platform
                    ? "a \(platform.name), but the pipeline provisions \(definition.platform.name): not touched"
                    : serial.isEmpty ? "its serial number could not be read (still settling, or no permission): not touched; run it again"
                    : "serial \"\(Self.printable(serial))\" is not a \(platform.name) device ID: not touched"
                // The serial is the device's own text: reported only when it is a device ID.
                skip = DeviceReport(port: port.description, deviceID: platform.isValidDeviceID(serial) ? serial : nil,
                                    platform: platform.name,
                                    outcome: .skipped, state: nil, fingerprint: nil, reason: reason, failureClass: nil,
                                    failedStep: nil, steps: [], seconds: 0)
                skippedReports.append(skip!)
                return nil
            }
            if let limit, started >= limit { return nil }
            started += 1
            active.insert(serial)
            awaited.remove(serial)
            retryable.remove(serial)
            return QueuedDevice(deviceID: serial, platform: platform, port: port)
        }
        if refused, let skip {
            refusals?.refuse(port: port, deviceID: skip.deviceID, platform: platform)
        } else if let skip {
            emit(ProvisioningEvent(type: .deviceFinished, jobID: jobID, port: skip.port, deviceID: skip.deviceID,
                                   platform: skip.platform, outcome: .skipped, message: skip.reason))
        }
        if let queued { continuation.yield(queued) }
        let full = lock.withLock { limit.map { started >= $0 } ?? false }
        if full { finish() }
    }

    func departed(_ device: BusDevice) {
        // Before the serial guard: a device refused for its port may have had no readable serial.
        lock.withLock { _ = refusedPorts.remove(device.identity.port.description) }
        guard let serial = device.identity.serialNumber?.lowercased() else { return }
        lock.withLock {
            // Unplugged after failing: the next arrival is a person trying it again.
            if retryable.contains(serial) { ended.remove(serial) }
            ignoredPorts.remove(device.identity.port.description)
        }
    }

    func finished(_ report: DeviceReport) {
        guard let serial = report.deviceID else { return }
        lock.withLock {
            active.remove(serial)
            ended.insert(serial)
            if report.outcome == .failed { retryable.insert(serial) }
        }
    }

    /// A device's text for a message: printable ASCII only (no terminal escapes), at most 40 characters.
    static func printable(_ text: String) -> String {
        String(String.UnicodeScalarView(text.unicodeScalars.prefix(40).map { (32...126).contains($0.value) ? $0 : "?" }))
    }

    /// The report of a device the run took but never started (a stop came first).
    static func notStarted(_ device: QueuedDevice) -> DeviceReport {
        DeviceReport(port: device.port.description, deviceID: device.deviceID, platform: device.platform.name,
                     outcome: .interrupted, state: nil, fingerprint: nil, reason: "not started: the run was stopped",
                     failureClass: nil, failedStep: nil, steps: [], seconds: 0)
    }

    /// No more devices will be queued (stop requested, not waiting, or the limit reached).
    func finish() {
        lock.withLock { closed = true }
        continuation.finish()
    }
}
