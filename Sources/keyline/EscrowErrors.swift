import Escrow
import FailurePolicy

extension AgeError: ReportableError {
    var kind: String {
        switch self {
        case .notAnAgeFile: "notAnAgeFile"
        case .headerMACMismatch: "headerMACMismatch"
        case .noRecipients: "noRecipients"
        case .noIdentities: "noIdentities"
        default: caseName(self)
        }
    }
    var message: String { description }
    var context: [String: String] { ["class": category.rawValue] }
    var exit: KeylineExit {
        switch self {
        // The identity held cannot open this file: not damage, a different key is needed.
        case .noIdentityMatched: .noPermission
        case .invalidRecipient, .identityAsRecipient, .noRecipients, .noIdentities: .usage
        case .io: .ioError
        default: .dataError
        }
    }
}

extension EscrowBackupError: ReportableError {
    var kind: String { caseName(self) }
    var message: String { description }
    var exit: KeylineExit { .dataError }
}

extension EscrowStoreError: ReportableError {
    var kind: String { caseName(self) }
    var message: String { description }
    var exit: KeylineExit {
        switch self {
        case .invalidKey: .usage
        case .invalidStore: .configuration
        case .objectExists: .cannotCreate
        case .notFound: .noInput
        case .checksumMismatch: .dataError
        case .io: .ioError
        case .unsafeStore: .unsafeEscrowStore
        }
    }
}

extension S3StoreError: ReportableError {
    var kind: String { caseName(self) }
    var message: String { description }
    var context: [String: String] { ["class": failureClass.rawValue] }
    var exit: KeylineExit {
        switch self {
        case .credentials: .configuration
        case .http(_, _, _, 403, _, _, _): .noPermission
        case .badResponse: .protocolError
        default: failureClass == .retryable ? .tempFail : .unavailable
        }
    }
}
