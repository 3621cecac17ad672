import Custody
import Registry
import Shamir

// How escrow custody's errors appear on the command line. A refused share is a data error (65),
// named with its file; too few shares and bad custodian lists are usage errors (64); share files
// that exist already are never overwritten (73).

extension CustodyError: ReportableError {
    public var kind: String {
        switch self {
        case .sharesRefused: "sharesRefused"
        case .tooFewShares: "tooFewShares"
        case .combinationMismatch: "shareCombinationMismatch"
        case .noShares: "noShares"
        case .unknownEpoch: "unknownEpoch"
        case .retiredEpoch: "retiredEpoch"
        case .invalidCustodians: "invalidCustodians"
        case .invalidEpochName: "invalidEpochName"
        case .shareFileExists: "shareFileExists"
        case .shareFileWrite: "cannotWrite"
        case .notAnUnfinishedRotation: "notAnUnfinishedRotation"
        case .backupRefused: "backupRefused"
        }
    }
    public var message: String { description }
    public var context: [String: String] {
        switch self {
        case .sharesRefused(let problems):
            Dictionary(problems.enumerated().map { ("share\($0.offset + 1)", "\($0.element.path): \($0.element.kind.rawValue)") },
                       uniquingKeysWith: { first, _ in first })
        case .tooFewShares(let epoch, let have, let need): ["epoch": epoch, "given": String(have), "threshold": String(need)]
        case .combinationMismatch(let epoch, _, _, _), .unknownEpoch(let epoch), .retiredEpoch(let epoch): ["epoch": epoch]
        case .shareFileExists(let path), .shareFileWrite(let path, _): ["file": path]
        case .backupRefused(let device, let key, _): ["device": device, "object": key]
        case .notAnUnfinishedRotation(let id): ["ceremony": String(id)]
        case .noShares, .invalidCustodians, .invalidEpochName: [:]
        }
    }
    public var exit: KeylineExit {
        switch self {
        case .sharesRefused, .combinationMismatch, .backupRefused: .dataError
        case .shareFileExists, .shareFileWrite: .cannotCreate
        case .tooFewShares, .noShares, .unknownEpoch, .retiredEpoch, .invalidCustodians, .invalidEpochName,
             .notAnUnfinishedRotation: .usage
        }
    }
}

extension CustodyRecordError: ReportableError {
    public var kind: String { "epochExists" }
    public var message: String { description }
    public var exit: KeylineExit { .usage }
}

extension ShamirError: ReportableError {
    public var kind: String { "shamir" }
    public var message: String { description }
    public var exit: KeylineExit { .dataError }
}
