import Foundation

/// Why an audit, or a job's report, could not be produced. Carries logins, table names, folders
/// and job IDs, never key material. How each appears on the command line (kind, exit code) is in
/// CommandReporting's AuditErrors.swift.
public enum AuditError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The login cannot read these registry tables: the audit would be silently partial.
    case loginCannotRead(user: String, tables: [String])
    /// The temporary findings file could not be created, written, rewound or read back (`errno`):
    /// the audit is incomplete.
    case findingsUnwritable(operation: String, directory: String, errno: Int32)
    /// The temporary findings file read back as something the audit did not write.
    case findingsDamaged(directory: String)
    /// `keyline report JOB` for a job the registry does not have.
    case unknownJob(Int64)
    /// `--check-store` names a store in which no escrow object in scope is recorded, while some
    /// are recorded in others: nothing could be verified.
    case storeNotRecorded(store: String, recorded: [String])

    public var description: String {
        switch self {
        case .loginCannotRead(let user, let tables):
            "the login \(user) cannot read \(tables.joined(separator: ", ")); grant it keyline_auditor"
        case .findingsUnwritable(let operation, let directory, let code):
            "cannot \(operation) the audit's temporary findings file in \(directory) (\(String(cString: strerror(code))))"
                + (Self.isOutOfSpace(code) ? ": free space there or point TMPDIR at a folder with room" : "")
                + "; the audit is incomplete"
        case .findingsDamaged(let directory):
            "the audit's temporary findings file in \(directory) reads back damaged"
        case .unknownJob(let job):
            "there is no job \(job) in the registry"
        case .storeNotRecorded(let store, let recorded):
            "--check-store: no escrow object in scope is recorded in \(store); they are recorded in "
                + recorded.joined(separator: ", ") + ". Nothing was verified: name the recorded store with --store "
                + "(or KEYLINE_ESCROW_STORE)"
        }
    }

    /// A full disk, a file size limit or a quota: the operator can make room.
    static func isOutOfSpace(_ code: Int32) -> Bool { code == ENOSPC || code == EFBIG || code == EDQUOT }
}
