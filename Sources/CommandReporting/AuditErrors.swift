import Audit

// How the audit's and the job report's errors appear on the command line (kind, message,
// context, exit code).

extension AuditError: ReportableError {
    public var kind: String {
        switch self {
        case .loginCannotRead: "databasePermissionDenied"
        case .findingsUnwritable, .findingsDamaged: "cannotWriteFindings"
        case .unknownJob: "unknownJob"
        case .storeNotRecorded: "storeNotRecorded"
        }
    }

    public var message: String { description }

    public var context: [String: String] {
        switch self {
        case .loginCannotRead: [:]
        case .findingsUnwritable(_, let directory, let code): ["directory": directory, "errno": String(code)]
        case .findingsDamaged(let directory): ["directory": directory]
        case .unknownJob(let job): ["job": String(job)]
        case .storeNotRecorded(let store, let recorded): ["store": store, "recorded": recorded.joined(separator: " ")]
        }
    }

    public var exit: KeylineExit {
        switch self {
        case .loginCannotRead: .noPermission
        case .findingsUnwritable, .findingsDamaged: .ioError
        case .unknownJob: .noInput
        case .storeNotRecorded: .configuration
        }
    }
}
