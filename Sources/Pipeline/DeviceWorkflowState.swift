import Registry

/// Per-device provisioning states, persisted in `job_devices` before the side effect they name is
/// considered done (design.md, "The provisioning workflow"). The order is the safety argument:
/// a key is registered only after its escrow object is durable. The registry owns the stored
/// values (and its triggers enforce the order), so the pipeline uses its type.
public typealias DeviceWorkflowState = JobDeviceState
