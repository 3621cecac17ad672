import FailurePolicy
import Provisioning

extension ProvisioningError: ReportableError {
    public var kind: String {
        switch self {
        case .noKeyOnDevice: "noKeyOnDevice"
        case .damagedKeyOnDevice: "damagedKeyOnDevice"
        case .keyChanged: "deviceKeyChanged"
        case .keyReadBackDiffers: "keyReadBackDiffers"
        case .deviceMissing: "deviceMissing"
        case .unfinishedElsewhere: "deviceUnfinishedInAnotherJob"
        case .unknownJob: "unknownJob"
        case .jobOfAnotherProduct: "jobOfAnotherProduct"
        case .unknownState: "unknownWorkflowState"
        case .jobInUse: "jobInUse"
        case .activeInAnotherProduct: "activeInAnotherProduct"
        }
    }

    public var message: String { description }

    public var context: [String: String] {
        switch self {
        case .noKeyOnDevice(let id), .damagedKeyOnDevice(let id, _), .keyChanged(let id, _, _), .keyReadBackDiffers(let id),
             .deviceMissing(let id, _):
            ["device": id]
        case .unfinishedElsewhere(let id, let job, _): ["device": id, "job": String(job)]
        case .unknownJob(let job), .jobOfAnotherProduct(let job, _, _), .jobInUse(let job): ["job": String(job)]
        case .unknownState(let state): ["state": state]
        case .activeInAnotherProduct(let id, let product, let fingerprint, _):
            ["device": id, "product": product, "fingerprint": fingerprint]
        }
    }

    public var exit: KeylineExit {
        if case .jobInUse = self { return .tempFail }
        switch failureClass {
        case .retryable: return .unavailable
        case .needsOperator: return .tempFail
        case .badDevice: return .protocolError
        case .badInput: return .dataError
        }
    }
}

extension PipelineValidationError: ReportableError {
    public var kind: String { "invalidPipeline" }
    public var message: String { description }
    public var context: [String: String] {
        guard let first = problems.first else { return [:] }
        return ["file": first.file, "line": String(first.line), "problems": String(problems.count)]
    }
    /// A pipeline file that cannot be read at all is missing input; anything else is bad data.
    public var exit: KeylineExit {
        problems.count == 1 && problems[0].line == 0 && problems[0].keyPath.isEmpty ? .noInput : .dataError
    }
}

extension EscrowDirectoryError: ReportableError {
    public var kind: String { "escrowStoreUnavailable" }
    public var message: String { description }
    public var context: [String: String] { ["store": store] }
    public var exit: KeylineExit {
        switch self {
        case .cannotCreate: .tempFail
        case .notADirectory: .configuration
        case .notWritable: .noPermission
        }
    }
}

extension ProvisioningRunError: ReportableError {
    public var kind: String {
        switch self {
        case .devicesWaiting: "infrastructureUnavailable"
        case .noDevices: "noDevices"
        }
    }
    public var message: String { description }
    public var context: [String: String] {
        switch self {
        case .devicesWaiting(_, _, let jobID): ["job": String(jobID)]
        case .noDevices: [:]
        }
    }
    public var exit: KeylineExit {
        switch self {
        case .devicesWaiting: .tempFail
        case .noDevices: .unavailable
        }
    }
}
