import FailurePolicy
import Foundation

/// Why an age file could not be read or written. Descriptions name what is wrong and what to
/// do; none of them ever contains key material or plaintext.
public enum AgeError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Where a file ended early.
    public enum TruncationPoint: Equatable, Sendable {
        /// Inside the textual header, before its `---` MAC line ended.
        case header
        /// After the header, inside the 16-byte payload nonce.
        case payloadNonce
        /// Inside the STREAM payload: `chunk` (0-based) is missing or cut short.
        case payload(chunk: Int)
    }

    /// The broad classes of the C2SP age test vectors, so callers (and exit codes) can act
    /// on what kind of failure happened without matching every case. (Named `Category`, not
    /// `FailureClass`: `failureClass` is the shared retry/operator policy of `ClassifiedError`.)
    public enum Category: String, Sendable {
        case armor, header, noMatch = "no match", headerMAC = "HMAC", payload, usage, io
    }

    case malformedArmor(String)
    case notAnAgeFile
    case unsupportedVersion(String)
    case malformedHeader(line: Int, reason: String)
    case malformedStanza(type: String, reason: String)
    case truncated(TruncationPoint)
    case noIdentityMatched(stanzaTypes: [String])
    case headerMACMismatch
    case payloadAuthenticationFailed(chunk: Int)
    case malformedPayload(chunk: Int, reason: String)
    case trailingData(afterChunk: Int)
    /// The text is at most an excerpt of what was given (see `X25519Recipient.excerpt`).
    case invalidRecipient(String, reason: String)
    /// An `AGE-SECRET-KEY-…` identity was given where a recipient belongs; `line` is 1-based
    /// within a recipients file when known. The secret text is never kept or quoted.
    case identityAsRecipient(line: Int?)
    /// `line` is 1-based within an identity file when known; the identity text itself is secret
    /// and never quoted.
    case invalidIdentity(line: Int?, reason: String)
    case noRecipients
    case noIdentities
    /// Reading or writing a streamed file failed.
    case io(operation: String, path: String, errno: Int32)

    public var category: Category {
        switch self {
        case .malformedArmor: .armor
        case .notAnAgeFile, .unsupportedVersion, .malformedHeader, .malformedStanza: .header
        case .truncated(.header), .truncated(.payloadNonce): .header
        case .truncated(.payload): .payload
        case .noIdentityMatched: .noMatch
        case .headerMACMismatch: .headerMAC
        case .payloadAuthenticationFailed, .malformedPayload, .trailingData: .payload
        case .invalidRecipient, .identityAsRecipient, .invalidIdentity, .noRecipients, .noIdentities: .usage
        case .io: .io
        }
    }

    public var description: String {
        switch self {
        case .malformedArmor(let reason):
            "the ASCII-armored age file is malformed (\(reason)); check the file was copied completely and unmodified"
        case .notAnAgeFile:
            "not an age file: it does not start with \"age-encryption.org/v1\" or an armor line; check the path"
        case .unsupportedVersion(let version):
            "unsupported age format version \"\(version)\"; this tool reads age-encryption.org/v1"
        case .malformedHeader(let line, let reason):
            "the age header is malformed at line \(line): \(reason); the file is damaged or was not written by age"
        case .malformedStanza(let type, let reason):
            "the age header's \(type) recipient stanza is malformed: \(reason); the file is damaged"
        case .truncated(.header):
            "the age file is truncated: it ends inside the header; restore it from an intact copy"
        case .truncated(.payloadNonce):
            "the age file is truncated: it ends right after the header, before the payload; restore it from an intact copy"
        case .truncated(.payload(let chunk)):
            "the age file is truncated: payload chunk \(chunk) is missing or cut short; restore it from an intact copy"
        case .noIdentityMatched(let types):
            "no identity matches any recipient of this file (recipient stanzas: \(types.isEmpty ? "none" : types.joined(separator: ", "))); use the identity whose age1… recipient the file was encrypted to"
        case .headerMACMismatch:
            "the age header's MAC does not verify: the header was modified after encryption; do not trust this file"
        case .payloadAuthenticationFailed(let chunk):
            "payload chunk \(chunk) failed authentication: the file was modified, damaged or cut short; do not trust its contents and restore it from an intact copy"
        case .malformedPayload(let chunk, let reason):
            "the age payload is malformed at chunk \(chunk): \(reason)"
        case .trailingData(let chunk):
            "the age file has data after its final payload chunk \(chunk); the file was modified or two files were joined"
        case .invalidRecipient(let text, let reason):
            "invalid age recipient \"\(text)\": \(reason); expected an X25519 recipient \"age1…\" as age-keygen prints it"
        case .identityAsRecipient(let line):
            "\(line.map { "line \($0): " } ?? "")this is an age identity (secret key), not a recipient; pass its age1… recipient instead (age-keygen -y FILE prints it) and keep the identity off the station"
        case .invalidIdentity(let line, let reason):
            "invalid age identity\(line.map { " on line \($0)" } ?? ""): \(reason); expected \"AGE-SECRET-KEY-1…\" as age-keygen writes it"
        case .noRecipients:
            "no recipients given; pass at least one age1… recipient"
        case .noIdentities:
            "no identities given; pass an identity file holding AGE-SECRET-KEY-1… lines"
        case .io(let operation, let path, let code):
            "\(operation) \(path) failed: \(String(cString: strerror(code)))"
        }
    }
}

extension AgeError: ClassifiedError {
    /// A file that does not parse or authenticate, or recipients / identities that are wrong, is
    /// the input's fault and retrying cannot help; only file I/O needs a person (disk, permissions).
    public var failureClass: FailureClass {
        switch self {
        case .io: .needsOperator
        default: .badInput
        }
    }
}
