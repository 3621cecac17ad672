import Foundation

/// The steps of the per-device workflow as an operator sees them (design.md, "The provisioning
/// workflow"); each moves the device's persisted state one place forward.
public enum ProvisioningStep: String, Sendable, Hashable, Codable, CaseIterable {
    case identify, enterDFU = "enter_dfu", flash, serverKey = "server_key", deviceKey = "device_key"
    case escrow, register, leave

    /// The step that moves a device out of `state`; nil from `done` and `failed`.
    public init?(leaving state: DeviceWorkflowState) {
        switch state {
        case .detected: self = .enterDFU
        case .dfu: self = .flash
        case .flashed: self = .serverKey
        case .serverKey: self = .deviceKey
        case .keyReady: self = .escrow
        case .escrowed: self = .register
        case .registered: self = .leave
        case .done, .failed: return nil
        }
    }
}

/// How a device's run ended.
public enum DeviceOutcome: String, Sendable, Hashable, Codable {
    /// Every step done: key escrowed and registered, device out of DFU mode.
    case done
    /// A step failed for good; the device keeps its last good state and can be run again.
    case failed
    /// Not provisioned on purpose: another platform, not selected, already provisioned.
    case skipped
    /// Stopped at a step boundary (Ctrl-C); `--resume JOB` continues it.
    case interrupted
}

/// One thing that happened during a provisioning run, for the live table, `--json` (one JSON
/// object per line, in the style of nrfutil's progress events) and the per-device logs.
/// Never holds key material: keys appear only as public fingerprints.
public struct ProvisioningEvent: Sendable, Hashable, Codable {
    public enum Kind: String, Sendable, Hashable, Codable {
        case jobStarted = "job_started"
        case deviceDetected = "device_detected"
        case stepStarted = "step_started"
        case progress
        case stateChanged = "state_changed"
        case retrying
        case held
        case note
        case deviceFinished = "device_finished"
        case jobFinished = "job_finished"
        /// A device on a port outside the pipeline's `ports:` list: not touched (PortAllowList.swift).
        case portNotPermitted = "port_not_permitted"
    }

    public var type: Kind
    public var time: Date
    public var jobID: Int64
    public var port: String?
    /// The port's nickname from the pipeline's `ports:` list, when it has one.
    public var portName: String?
    public var deviceID: String?
    public var platform: String?
    public var step: ProvisioningStep?
    public var state: DeviceWorkflowState?
    public var outcome: DeviceOutcome?
    /// Bytes done and total of the running transfer (`progress`).
    public var done: Int?
    public var total: Int?
    public var attempt: Int?
    /// Seconds since the device's run started (device events) or since the job started.
    public var elapsed: Double?
    public var message: String?
    public var failureClass: String?
    /// The public-key fingerprint recorded at `key_ready`.
    public var fingerprint: String?

    public init(type: Kind, jobID: Int64, time: Date = Date(), port: String? = nil, deviceID: String? = nil,
                platform: String? = nil, step: ProvisioningStep? = nil, state: DeviceWorkflowState? = nil,
                outcome: DeviceOutcome? = nil, done: Int? = nil, total: Int? = nil, attempt: Int? = nil,
                elapsed: Double? = nil, message: String? = nil, failureClass: String? = nil, fingerprint: String? = nil) {
        self.type = type
        self.time = time
        self.jobID = jobID
        self.port = port
        self.deviceID = deviceID
        self.platform = platform
        self.step = step
        self.state = state
        self.outcome = outcome
        self.done = done
        self.total = total
        self.attempt = attempt
        self.elapsed = elapsed
        self.message = message
        self.failureClass = failureClass
        self.fingerprint = fingerprint
    }

    /// One line of JSON (no newline inside), keys sorted, ISO 8601 times with fractional seconds.
    public func jsonLine() -> String {
        // Encoding a struct of strings and numbers cannot fail.
        String(decoding: (try? Self.jsonEncoder().encode(self)) ?? Data("{}".utf8), as: UTF8.self)
    }

    /// The encoder of every JSON line `provision` prints (events and the final summary): sorted
    /// keys, one line, ISO 8601 times with milliseconds.
    public static func jsonEncoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true)))
        }
        return encoder
    }
}

/// Where events go. Called from device tasks concurrently; must not block.
public typealias ProvisioningEventSink = @Sendable (ProvisioningEvent) -> Void

/// A step's timing in a device report.
public struct StepTiming: Sendable, Hashable, Codable {
    public var step: ProvisioningStep
    public var started: Date
    public var seconds: Double
    public var attempts: Int
}

/// How one device's run went.
public struct DeviceReport: Sendable, Hashable, Codable {
    public var port: String
    public var deviceID: String?
    public var platform: String?
    public var outcome: DeviceOutcome
    /// The persisted state the run ended in (the last good state when it failed).
    public var state: DeviceWorkflowState?
    public var fingerprint: String?
    public var reason: String?
    public var failureClass: String?
    public var failedStep: ProvisioningStep?
    public var steps: [StepTiming]
    public var seconds: Double
}

/// The end of a run: every device and the totals.
public struct ProvisioningSummary: Sendable, Hashable, Codable {
    public var jobID: Int64
    public var product: String
    public var station: String
    public var devices: [DeviceReport]
    public var seconds: Double
    /// True when the run stopped at a step boundary on request (Ctrl-C).
    public var interrupted: Bool

    public func count(_ outcome: DeviceOutcome) -> Int { devices.filter { $0.outcome == outcome }.count }
}
