import Age
import Escrow
import Registry

/// Where an audit goes as it runs: registrations as they stream, the findings after them, the
/// store check's progress. The command line renders them (table, CSV, JSON); the audit decides
/// what they are.
public protocol AuditOutput: AnyObject {
    /// The login may write, is a superuser or bypasses row-level security: an audit needs none
    /// of that (told before anything else is written).
    func loginNotReadOnly(_ login: AuditPrivileges)
    func begin(login: AuditPrivileges) throws
    /// One registration in scope, oldest first.
    func key(_ key: AuditedKey) throws
    func progress(_ progress: StoreCheckProgress)
    /// Every finding (read back from the spool, in the order found) and the totals.
    func finish(findings: FindingSpool, registrations: Int, statuses: [String: Int]) throws
}

/// `keyline audit`: which keys are registered, and does every one have an intact backup.
public enum KeyAudit {
    /// The whole audit in one read-only snapshot of the registry: schema and login checks, every
    /// registration in `scope` with its findings, the backups decrypted with `decryptWith` (when
    /// given), the registry's cross-checks, then every object of `store` hashed and the store
    /// listed for orphans (when `checkStore`). Findings wait on disk (a `FindingSpool`), so
    /// memory does not grow with the registry or the store. Returns the number of errors found.
    public static func run(scope: AuditScope, store: (any EscrowStore)?, checkStore: Bool,
                           decryptWith identities: [X25519Identity]?, output: some AuditOutput,
                           settings: ConnectionSettings = .fromEnvironment()) async throws -> Int {
        let decrypt = identities.flatMap { identities in
            store.map { BackupDecryptCheck(store: $0, identities: identities, reportMissing: !checkStore) }
        }
        return try await RegistryDatabase.audit(settings, scope: scope) { audit in
            try await run(audit, store: checkStore ? store : nil, decrypt: decrypt, output: output)
        }
    }

    static func run(_ audit: RegistryAudit, store: (any EscrowStore)?, decrypt: BackupDecryptCheck?,
                    output: some AuditOutput) async throws -> Int {
        // An older schema lacks what the audit reads (step timings, the audit's indexes): refused
        // with the fix, not left to fail on a missing table halfway through a listing.
        try await audit.requireCurrentSchema()
        let login = try await audit.privileges()
        if !login.unreadable.isEmpty { throw AuditError.loginCannotRead(user: login.user, tables: login.unreadable) }
        if !login.isReadOnly { output.loginNotReadOnly(login) }
        let spool = try FindingSpool()
        try output.begin(login: login)
        var registrations = 0
        var statuses: [String: Int] = [:]
        try await audit.forEachKey { keys in
            for key in keys {
                registrations += 1
                statuses[key.status, default: 0] += 1
                try output.key(key)
                for finding in findings(of: key) { try spool.add(finding) }
            }
            if let decrypt {
                for finding in await decrypt.check(keys) { try spool.add(finding) }
            }
        }
        try await audit.forEachCrossCheckFinding { try spool.add($0) }
        try await CustodyAuditCheck(audit: audit).run { try spool.add($0) }
        if let store {
            try await StoreCheck(store: store, audit: audit, report: { try spool.add($0) },
                                 progress: { output.progress($0) }).run()
        }
        try output.finish(findings: spool, registrations: registrations, statuses: statuses)
        return spool.counts[.error] ?? 0
    }

    /// What one registration alone shows: no backup recorded, or a key no longer active.
    static func findings(of key: AuditedKey) -> [AuditFinding] {
        var findings: [AuditFinding] = []
        if key.objectKey == nil {
            findings.append(AuditFinding(.error, "no_escrow_object", productID: key.productID, deviceID: key.deviceID,
                                         fingerprint: key.fingerprint, jobID: key.jobID,
                                         message: "key \(key.fingerprint) of device \(key.deviceID) is registered but escrow object \(key.escrowObjectID) does not exist: no backup"))
        }
        if key.status != "active" {
            findings.append(AuditFinding(.info, "key_\(key.status)", productID: key.productID, deviceID: key.deviceID,
                                         fingerprint: key.fingerprint, jobID: key.jobID,
                                         message: "key \(key.fingerprint) of device \(key.deviceID) is \(key.status)" + (key.statusReason.map { ": \($0)" } ?? "")))
        }
        return findings
    }
}
