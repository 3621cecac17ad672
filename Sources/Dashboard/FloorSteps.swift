/// The stepper of a port tile: detect → DFU → flash → server key → key → escrow → register →
/// cloud → leave. `data-step` values are the raw values (stable for tests and scripts).
enum FloorStep: String, CaseIterable, Sendable {
    case detect, dfu, flash, serverKey = "server_key", key, escrow, register, cloud, leave

    var label: String {
        switch self {
        case .detect: "detect"
        case .dfu: "DFU"
        case .flash: "flash"
        case .serverKey: "server key"
        case .key: "key"
        case .escrow: "escrow"
        case .register: "register"
        case .cloud: "cloud"
        case .leave: "leave"
        }
    }

    /// The step a device in workflow state `state` (job_devices.state) works on next; `leave` for done.
    static func current(forState state: String) -> FloorStep? {
        switch state {
        case "detected": .dfu
        case "dfu": .flash
        case "flashed": .serverKey
        case "server_key": .key
        case "key_ready": .escrow
        case "escrowed": .register
        case "registered", "done": .leave
        default: nil
        }
    }

    /// A recorded step (Provisioning's `ProvisioningStep` raw value) on the stepper.
    static func recorded(_ step: String) -> FloorStep? {
        switch step {
        case "identify": .detect
        case "enter_dfu": .dfu
        case "flash": .flash
        case "server_key": .serverKey
        case "device_key": .key
        case "escrow": .escrow
        case "register": .register
        case "leave": .leave
        default: nil
        }
    }

    /// Where a device stands: the step it is on (or failed at) and whether it is done.
    static func position(of device: FloorDeviceView) -> FloorStep {
        if device.state == "failed" {
            return device.failedStep.flatMap(recorded)
                ?? device.lastGoodState.flatMap(current(forState:)) ?? .detect
        }
        return current(forState: device.state) ?? .detect
    }
}

/// The fields of a device the stepper needs.
protocol FloorDeviceView {
    var state: String { get }
    var failedStep: String? { get }
    var lastGoodState: String? { get }
}
