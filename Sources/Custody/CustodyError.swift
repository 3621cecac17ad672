import FailurePolicy
import Foundation

/// What is wrong with one share brought to a ceremony. Each names the file, so the person
/// holding it knows which one to look at; none is ever used.
public struct ShareProblem: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Sendable, Hashable {
        /// The file (or document) hashes to no share keyline recorded: altered, or not a share.
        case unknown
        /// No custodian identity given opens the share file.
        case notOpened
        /// A share of another epoch than the one being recovered.
        case otherEpoch
        /// A share of a set a reshare has replaced.
        case retiredSet
        /// The same share (x) brought twice.
        case duplicate
        /// The file cannot be read.
        case unreadable
    }

    public let path: String
    public let kind: Kind
    public let detail: String

    public var description: String { "share \(path): \(detail)" }
}

/// Why a custody ceremony refused; nothing was written to a device, a store or the registry.
public enum CustodyError: Error, Sendable, Hashable, CustomStringConvertible, ClassifiedError {
    /// One or more shares refused, each named.
    case sharesRefused([ShareProblem])
    /// Fewer good shares than the epoch's threshold.
    case tooFewShares(epoch: String, have: Int, need: Int)
    /// The shares, each matching its record, combined to an identity whose recipient is not the
    /// epoch's (cannot happen unless the records themselves were changed): nothing is used.
    case combinationMismatch(epoch: String, recipient: String, combined: String, paths: [String])
    case noShares
    case unknownEpoch(String)
    case retiredEpoch(String)
    /// `name=age1…` custodian entries that are malformed, repeated, or too few for the threshold.
    case invalidCustodians(String)
    case invalidEpochName(String)
    /// A share file or folder that exists already: share files are written once.
    case shareFileExists(String)
    case shareFileWrite(path: String, errno: Int32)
    /// `rotate --resume` of a ceremony that is not an unfinished rotation.
    case notAnUnfinishedRotation(Int64)
    /// A backup that does not decrypt or check out under the old epoch, during a rotation.
    case backupRefused(deviceID: String, objectKey: String, detail: String)

    public var description: String {
        switch self {
        case .sharesRefused(let problems):
            "refused \(problems.count == 1 ? "a share" : "\(problems.count) shares") (nothing was used or written):\n"
                + problems.map { "  \($0)" }.joined(separator: "\n")
        case .tooFewShares(let epoch, let have, let need):
            "epoch \(epoch) needs \(need) shares from different custodians; \(have) given: bring \(need - have) more (nothing was used or written)"
        case .combinationMismatch(let epoch, let recipient, let combined, let paths):
            "the shares \(paths.joined(separator: ", ")) combine to an identity with recipient \(combined), not epoch \(epoch)'s \(recipient): the registry's share records do not match the shares; nothing was used"
        case .noShares: "no share files given: give the epoch's threshold of them with --shares"
        case .unknownEpoch(let name): "no escrow epoch named \(name) (keyline custody list shows them)"
        case .retiredEpoch(let name): "escrow epoch \(name) is retired: its shares can still restore, but it is not resplit or rotated from again"
        case .invalidCustodians(let reason): "custodians: \(reason)"
        case .invalidEpochName(let name): "epoch name \"\(name)\" is not 1-64 letters, digits, '.', '-' or '_'"
        case .shareFileExists(let path): "\(path) already exists: share files are written once; choose an empty --out folder"
        case .shareFileWrite(let path, let code): "cannot write share file \(path): \(String(cString: strerror(code)))"
        case .notAnUnfinishedRotation(let id): "custody ceremony \(id) is not an unfinished rotation (keyline custody list shows them)"
        case .backupRefused(let device, let key, let detail):
            "backup \(key) of device \(device) was not rotated: \(detail)"
        }
    }

    public var failureClass: FailureClass {
        switch self {
        case .shareFileWrite: .needsOperator
        case .backupRefused: .badDevice
        default: .badInput
        }
    }
}
