import Escrow
import Age
import EscrowS3
import FailurePolicy

extension AgeError: ReportableError {
    public var kind: String {
        switch self {
        case .notAnAgeFile: "notAnAgeFile"
        case .headerMACMismatch: "headerMACMismatch"
        case .noRecipients: "noRecipients"
        case .noIdentities: "noIdentities"
        default: caseName(self)
        }
    }
    public var message: String { description }
    public var context: [String: String] { ["class": category.rawValue] }
    public var exit: KeylineExit {
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
    public var kind: String { caseName(self) }
    public var message: String { description }
    public var exit: KeylineExit { .dataError }
}

extension EscrowStoreError: ReportableError {
    public var kind: String { caseName(self) }
    public var message: String { description }
    public var exit: KeylineExit {
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
    public var kind: String { caseName(self) }
    public var message: String { description }
    public var context: [String: String] { ["class": failureClass.rawValue] }
    public var exit: KeylineExit {
        switch self {
        case .credentials: .configuration
        case .http(_, _, _, 403, _, _, _): .noPermission
        case .badResponse: .protocolError
        default: failureClass == .retryable ? .tempFail : .unavailable
        }
    }
}

extension EscrowRequestError: ReportableError {
    public var kind: String {
        switch self {
        case .invalidDeviceID: "invalidDeviceID"
        case .checksumMismatch: "checksumMismatch"
        }
    }
    public var message: String { description }
    public var context: [String: String] {
        switch self {
        case .invalidDeviceID(let deviceID, _, _): ["deviceID": deviceID]
        case .checksumMismatch(let file, let expected, let actual): ["file": file, "expected": expected, "actual": actual]
        }
    }
    public var exit: KeylineExit {
        switch self {
        case .invalidDeviceID: .usage
        case .checksumMismatch: .dataError
        }
    }
}
