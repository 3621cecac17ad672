/// Per-device provisioning states, persisted in `job_devices.state` before the side effect they
/// name is considered done (design.md, "The provisioning workflow"). The order is the safety
/// argument: a key is registered only after its escrow object is durable. The registry stores the
/// raw values and its trigger refuses any move that is not forward along `next`.
public enum DeviceWorkflowState: String, Sendable, CaseIterable, Codable, Comparable {
    case detected, dfu, flashed, serverKey = "server_key", keyReady = "key_ready"
    case escrowed, registered, done, failed

    /// The workflow order (`failed` is outside it).
    public static let order: [DeviceWorkflowState] = [.detected, .dfu, .flashed, .serverKey, .keyReady, .escrowed, .registered, .done]

    /// The state the next step reaches from this one; nil from `done` and `failed`.
    public var next: DeviceWorkflowState? {
        guard let index = Self.order.firstIndex(of: self), index + 1 < Self.order.count else { return nil }
        return Self.order[index + 1]
    }

    /// True once a key the device holds has been read back and its fingerprint recorded: from here
    /// on the device's key must never be replaced, only re-read.
    public var hasKey: Bool { self >= .keyReady && self != .failed }

    public static func < (a: DeviceWorkflowState, b: DeviceWorkflowState) -> Bool {
        (Self.order.firstIndex(of: a) ?? Self.order.count) < (Self.order.firstIndex(of: b) ?? Self.order.count)
    }
}
