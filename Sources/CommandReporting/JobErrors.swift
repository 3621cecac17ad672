import Registry

extension JobLeaseError: ReportableError {
    public var kind: String { "jobLeaseLost" }
    public var message: String { description }
    public var context: [String: String] {
        switch self {
        case .lost(let job, let epoch):
            var context = ["job": String(job)]
            context["lease"] = epoch.map(String.init)
            return context
        }
    }
    /// A conflict with another run: as `jobInUse`.
    public var exit: KeylineExit { .tempFail }
}

extension JobDeviceAbandonmentError: ReportableError {
    public var kind: String {
        switch self {
        case .reasonRequired: "reasonRequired"
        case .notInJob: "deviceNotInJob"
        case .done: "jobDeviceDone"
        case .alreadyAbandoned: "jobDeviceAlreadyAbandoned"
        case .notAbandoned: "jobDeviceNotAbandoned"
        }
    }
    public var message: String { description }
    public var context: [String: String] {
        switch self {
        case .reasonRequired(let job, let device), .notInJob(let job, let device), .done(let job, let device),
             .alreadyAbandoned(let job, let device), .notAbandoned(let job, let device):
            ["job": String(job), "device": device]
        }
    }
    public var exit: KeylineExit {
        if case .reasonRequired = self { return .usage }
        return .dataError
    }
}
