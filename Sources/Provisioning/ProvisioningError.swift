import FailurePolicy

/// Refusals of the provisioning workflow itself (the layers below report their own errors).
/// Messages name the device and say what to do; they never hold key bytes.
public enum ProvisioningError: Error, Sendable, Hashable, CustomStringConvertible, ClassifiedError {
    /// `device` key mode, but the device has not generated a key yet.
    case noKeyOnDevice(deviceID: String)
    /// The key slot holds bytes that are not a usable key: never overwritten automatically.
    case damagedKeyOnDevice(deviceID: String, detail: String)
    /// The device's key differs from the one recorded at `key_ready`: never replaced, never escrowed.
    case keyChanged(deviceID: String, recorded: String, found: String)
    /// The device's key differs right after keyline wrote it.
    case keyReadBackDiffers(deviceID: String)
    /// The device is not on the bus (unplugged, or not back after a re-enumeration).
    case deviceMissing(deviceID: String, waited: Duration)
    /// Another job of this station has not finished with this device.
    case unfinishedElsewhere(deviceID: String, jobID: Int64, state: String)
    /// The job to resume does not exist, or belongs to another product.
    case unknownJob(Int64)
    case jobOfAnotherProduct(jobID: Int64, product: String, expected: String)
    /// The registry holds a state this keyline does not know (a newer schema).
    case unknownState(String)
    /// Another keyline process is running this job right now.
    case jobInUse(Int64)
    /// The device has an active key in another product than the pipeline's: never touched.
    case activeInAnotherProduct(deviceID: String, product: String, fingerprint: String, pipelineProduct: String)

    public var failureClass: FailureClass {
        switch self {
        case .deviceMissing: .retryable
        case .noKeyOnDevice, .damagedKeyOnDevice, .keyChanged, .keyReadBackDiffers: .badDevice
        case .unfinishedElsewhere, .unknownJob, .jobOfAnotherProduct, .unknownState: .badInput
        case .jobInUse: .badInput
        case .activeInAnotherProduct: .badDevice
        }
    }

    public var description: String {
        switch self {
        case .noKeyOnDevice(let id):
            "device \(id) has no key yet and the pipeline's key mode is `device`: let it connect to the cloud once (Gen3 makes its key then) or use key mode `host`"
        case .damagedKeyOnDevice(let id, let detail):
            "device \(id) holds a damaged key (\(detail)); keyline never overwrites a key slot it cannot read: save the slot with `keyline dfu read` for the record, clear it, and run the device again"
        case .keyChanged(let id, let recorded, let found):
            "device \(id) now holds key \(found), not \(recorded) recorded when its key was read: nothing was escrowed or registered for the new one; if the recorded key was escrowed, `keyline restore` puts it back, otherwise investigate before running the device again"
        case .keyReadBackDiffers(let id):
            "device \(id): the key read back differs from the key written; the device's flash may be failing"
        case .deviceMissing(let id, let waited):
            "device \(id) did not appear on the bus within \(waited); check its cable and hub port, then run it again"
        case .unfinishedElsewhere(let id, let job, let state):
            "device \(id) is unfinished in job \(job) (state \(state)): finish it with `keyline provision PIPELINE --resume \(job)`"
        case .unknownJob(let id):
            "job \(id) does not exist in the registry"
        case .jobOfAnotherProduct(let id, let product, let expected):
            "job \(id) provisions product \(product), but this pipeline's product is \(expected): resume it with its own pipeline"
        case .jobInUse(let id):
            "job \(id) is being run by another keyline process (this station or another): let it finish or stop it, then resume"
        case .activeInAnotherProduct(let id, let product, let fingerprint, let pipelineProduct):
            "device \(id) has an active key (\(fingerprint)) in product \(product), not this pipeline's \(pipelineProduct): "
                + "not touched. Provision it with product \(product)'s pipeline, or, if it really moves to \(pipelineProduct), "
                + "revoke or supersede its key in \(product) first (RMA) and run it again"
        case .unknownState(let state):
            "the registry holds workflow state \"\(state)\", which this keyline does not know: update keyline on this station"
        }
    }
}
