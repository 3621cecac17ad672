import ArgumentParser
import Audit
import CommandReporting
import Escrow
import EscrowS3
import Foundation
import Registry

/// `keyline audit`: which keys are registered, and does every one have an intact backup.
struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "List registered keys and check that every one has an intact escrow backup.",
        discussion: """
            Lists the registered keys (device, product, platform, algorithm, fingerprint, when, job, \
            station, status, escrow object) and then every finding with its severity:

              error    no_escrow_object           a registration without its escrow record
              error    escrow_object_missing      (--check-store) the recorded object is not in the store
              error    escrow_object_modified     (--check-store) the object's SHA-256 differs from the record
              warning  orphan_object              (--check-store) a file in the store no record names
              error    objects_in_other_store     (--check-store) objects recorded in another store: not checked
              error    escrow_object_unreadable   (--check-store) unreadable, or behind a symlink or a
                                                  group/world-writable folder (the checks `put` makes)
              error    escrow_object_of_another_key  the registration names an escrow object recorded
                                                  for another device, product or key
              error    public_key_on_two_devices  one public key recorded for two devices
              error    several_active_keys        more than one active key for a device
              warning  key_never_registered       a device reached key_ready/escrowed in a stopped job
              info     key_superseded, key_revoked, restored; warning restoration_failed
              error    backup_does_not_decrypt    (--decrypt) the backup does not decrypt with --identity
              error    backup_key_mismatch        (--decrypt) the backup holds another key or device
              error    cloud_upload_parked        the Particle cloud refused the key's upload: the device
                                                  cannot connect (`keyline cloud status`)
              warning  cloud_upload_pending       the key's upload is still pending after --cloud-pending-age
              warning  backup_under_retired_epoch an active key's backup is still encrypted to a retired epoch
              error    generation_not_registered  a later-generation object (.gN.age) no registration, rotation or job records
              error    epoch_short_of_custodians  an active epoch has fewer reachable custodians than its threshold
              warning  epoch_at_threshold         exactly as many reachable custodians as the threshold
              error    epoch_without_shares       an active epoch with no share set

            The audit reads one consistent snapshot of the registry, streamed through a server-side \
            cursor: memory does not grow with the number of registrations. Run it with a login that \
            is a member of keyline_auditor (read-only); keyline says so when the login may write. \
            --check-store covers the escrow objects of the product (or of all products) in the store \
            given by --store or KEYLINE_ESCROW_STORE, whatever --since and --job say, in two streaming \
            passes (memory does not grow with the store): every recorded object is read and hashed \
            (a directory on every core; s3://bucket/prefix 16 requests at a time), then the store is \
            listed (a directory walk, or ListObjectsV2) for orphans. Progress goes to standard error \
            when it is a terminal.

            EXIT CODES
              0   no finding is an error (warnings and notes may be listed)
              2   at least one finding is an error
              64  usage error
              66  identity file missing
              74  the output or the temporary findings file cannot be written (full disk: \
                  free space or set TMPDIR)
              75  registry unreachable
              77  permission denied (the login cannot read the registry)
              78  database settings invalid, or the registry's schema is older than this keyline \
                  (`keyline db migrate`), or --check-store names a store where none of the \
                  objects in scope is recorded (storeNotRecorded: nothing would be verified)
              79  --check-store: the store's root is a symlink or group/world-writable
            """)

    @Option(help: "Only this product's keys.")
    var product: String?

    @Option(help: "Only keys registered at or after this time (2026-11-21 or 2026-11-21T10:30:00Z).")
    var since: String?

    @Option(help: "Only keys registered by this job.")
    var job: Int64?

    @Option(help: "Output format: table, csv or json.")
    var format: String = "table"

    @Flag(help: "Read every escrow object in the store: missing, modified and orphan objects.")
    var checkStore = false

    @Flag(help: "Decrypt every listed backup with --identity and compare its key with the registration.")
    var decrypt = false

    @Option(help: "The RMA escrow identity file (AGE-SECRET-KEY-1…), for --decrypt.")
    var identity: String?

    @Option(help: "The escrow store: a directory or s3://bucket/prefix (default: KEYLINE_ESCROW_STORE).")
    var store: String?

    @Option(help: ArgumentHelp("Warn about a key whose cloud upload is still pending after this many seconds.",
                               valueName: "SECONDS"))
    var cloudPendingAge = 3600

    func validate() throws {
        guard AuditFormat(rawValue: format) != nil else { throw ValidationError("--format must be table, csv or json") }
        guard cloudPendingAge >= 0 else { throw ValidationError("--cloud-pending-age must be 0 or more seconds") }
        if decrypt && identity == nil { throw ValidationError("--decrypt needs --identity FILE (the RMA escrow identity)") }
        if identity != nil && !decrypt { throw ValidationError("--identity is used with --decrypt") }
        if since != nil && Self.parseTime(since!) == nil {
            throw ValidationError("--since must be a date (2026-11-21) or an ISO 8601 time (2026-11-21T10:30:00Z)")
        }
        if (checkStore || decrypt) && storeDirectory == nil {
            throw ValidationError("--check-store and --decrypt need the escrow store: --store DIR|s3://bucket/prefix or KEYLINE_ESCROW_STORE")
        }
    }

    var storeDirectory: String? {
        store ?? ProcessInfo.processInfo.environment["KEYLINE_ESCROW_STORE"].flatMap { $0.isEmpty ? nil : $0 }
    }

    static func parseTime(_ text: String) -> Date? {
        if let date = try? Date(text, strategy: .iso8601) { return date }
        let day = ISO8601DateFormatter()
        day.formatOptions = [.withFullDate]
        return day.date(from: text)
    }

    func run() async throws {
        let format = AuditFormat(rawValue: format)!
        try await CLI.run(json: format == .json) {
            let identities = try decrypt ? EscrowKeyFiles.identities([identity!], what: "an age identity file") : nil
            let scope = AuditScope(productID: product, since: since.flatMap(Self.parseTime), jobID: job)
            let store = try storeDirectory.map { try EscrowStores.open($0) }
            let errors = try await KeyAudit.run(scope: scope, store: store, checkStore: checkStore, decryptWith: identities,
                                                output: AuditWriter(format: format, out: StreamingOutput()),
                                                cloudPendingAge: .seconds(cloudPendingAge))
            if errors > 0 { throw ExitCode(KeylineExit.auditErrors.rawValue) }
        }
    }
}
