import FailurePolicy
import Pipeline

extension ProvisioningError: ReportableError {
    var kind: String {
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
        }
    }

    var message: String { description }

    var context: [String: String] {
        switch self {
        case .noKeyOnDevice(let id), .damagedKeyOnDevice(let id, _), .keyChanged(let id, _, _), .keyReadBackDiffers(let id),
             .deviceMissing(let id, _):
            ["device": id]
        case .unfinishedElsewhere(let id, let job, _): ["device": id, "job": String(job)]
        case .unknownJob(let job), .jobOfAnotherProduct(let job, _, _): ["job": String(job)]
        case .unknownState(let state): ["state": state]
        }
    }

    var exit: KeylineExit {
        switch failureClass {
        case .retryable: .unavailable
        case .needsOperator: .tempFail
        case .badDevice: .protocolError
        case .badInput: .dataError
        }
    }
}
