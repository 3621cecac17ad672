/// Per-device provisioning states, persisted in `job_devices` before the side effect they name is
/// considered done (design.md, "The provisioning workflow"). The order is the safety argument:
/// a key is registered only after its escrow object is durable.
public enum DeviceWorkflowState: String, Sendable, CaseIterable, Codable {
    case detected, dfu, flashed, serverKey = "server_key", keyReady = "key_ready"
    case escrowed, registered, done, failed
}
