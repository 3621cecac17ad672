import Age
import Escrow
import Registry
import LocalFiles

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
                           settings: ConnectionSettings = .fromEnvironment(),
                           cloudPendingAge: Duration = .seconds(3600)) async throws -> Int {
        let decrypt = identities.flatMap { identities in
            store.map { BackupDecryptCheck(store: $0, identities: identities, reportMissing: !checkStore) }
        }
        return try await RegistryDatabase.audit(settings, scope: scope) { audit in
            try await run(audit, store: checkStore ? store : nil, decrypt: decrypt, output: output,
                          cloudPendingAge: cloudPendingAge)
        }
    }

    static func run(_ audit: RegistryAudit, store: (any EscrowStore)?, decrypt: BackupDecryptCheck?,
                    output: some AuditOutput, cloudPendingAge: Duration = .seconds(3600)) async throws -> Int {
        // An older schema lacks what the audit reads (step timings, the audit's indexes): refused
        // with the fix, not left to fail on a missing table halfway through a listing.
        try await audit.requireCurrentSchema()
        let login = try await audit.privileges()
        if !login.unreadable.isEmpty { throw AuditError.loginCannotRead(user: login.user, tables: login.unreadable) }
        if !login.isReadOnly { output.loginNotReadOnly(login) }
        // A store that holds none of the recorded objects would turn every one into "not
        // checked" and pass: refused before anything is listed (issue 21, item 15).
        if let directory = store as? DirectoryEscrowStore { try await offPool { try directory.checkRootIsSafe() } }
        if let store {
            let counts = try await audit.objectCounts()
            if !counts.isEmpty, !counts.contains(where: { $0.storeURI == store.storeURI }) {
                throw AuditError.storeNotRecorded(store: store.storeURI, recorded: counts.map(\.storeURI))
            }
        }
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
        try await audit.forEachCloudFinding(pendingAge: cloudPendingAge) { try spool.add($0) }
        try await audit.forEachInterruptedDoctorFinding { try spool.add($0) }
        try await CustodyAuditCheck(audit: audit).run { try spool.add($0) }
        if let store {
            try await StoreCheck(store: store, audit: audit, report: { try spool.add($0) },
                                 progress: { output.progress($0) }).run()
        }
        try output.finish(findings: spool, registrations: registrations, statuses: statuses)
        return spool.counts[.error] ?? 0
    }

    /// What one registration alone shows: no backup recorded, another key's backup, or a key no
    /// longer active.
    static func findings(of key: AuditedKey) -> [AuditFinding] {
        var findings: [AuditFinding] = []
        if key.objectKey == nil {
            findings.append(AuditFinding(.error, "no_escrow_object", productID: key.productID, deviceID: key.deviceID,
                                         fingerprint: key.fingerprint, jobID: key.jobID,
                                         message: "key \(key.fingerprint) of device \(key.deviceID) is registered but escrow object \(key.escrowObjectID) does not exist: no backup"))
        }
        // The registry's foreign key ties a registration to its own device's object; one loaded
        // around it (a restore from a dump, replication, a superuser) shows only here, and
        // `restore` would refuse the device.
        if key.objectKey != nil,
           key.objectDeviceID != key.deviceID || key.objectProductID != key.productID
            || key.objectPublicKeySHA256 != key.fingerprint {
            findings.append(AuditFinding(.error, "escrow_object_of_another_key", productID: key.productID,
                                         deviceID: key.deviceID, fingerprint: key.fingerprint, jobID: key.jobID,
                                         objectKey: key.objectKey,
                                         message: "key \(key.fingerprint) of device \(key.deviceID) names escrow object \(key.escrowObjectID), "
                                             + "which was recorded for device \(key.objectDeviceID ?? "?") in product \(key.objectProductID ?? "?") "
                                             + "with key \(key.objectPublicKeySHA256 ?? "?"): this registration has no backup of its own"))
        }
        if key.status != "active" {
            findings.append(AuditFinding(.info, "key_\(key.status)", productID: key.productID, deviceID: key.deviceID,
                                         fingerprint: key.fingerprint, jobID: key.jobID,
                                         message: "key \(key.fingerprint) of device \(key.deviceID) is \(key.status)" + (key.statusReason.map { ": \($0)" } ?? "")))
        }
        return findings
    }
}
