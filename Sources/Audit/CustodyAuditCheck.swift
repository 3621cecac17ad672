import Registry

/// What the audit knows about escrow custody (schema 0012): backups still under a retired epoch,
/// rotated objects whose generation no registration records (or records under another number),
/// and epochs whose reachable custodians (shares not reported lost) are fewer than, or exactly,
/// the threshold. Read in the audit's snapshot, a batch at a time.
struct CustodyAuditCheck {
    let audit: RegistryAudit

    func run(_ report: (AuditFinding) async throws -> Void) async throws {
        let product = audit.scope.productID
        try await audit.snapshot.forEachBatch("""
            SELECT r.product_id, r.device_id, r.fingerprint, e.object_key, p.name
            FROM key_registrations r
            JOIN escrow_objects e ON e.id = keyline_current_escrow_object(r.id)
            JOIN escrow_epochs p ON p.status = 'retired' AND p.recipient = ANY (e.recipients)
            WHERE r.status = 'active' AND ($1::text IS NULL OR r.product_id = $1)
            ORDER BY r.id
            """, [product], batchSize: audit.batchSize) { rows in
            for row in rows {
                let (device, epoch): (String, String) = (try row.decode(at: 1), try row.decode(at: 4))
                try await report(AuditFinding(.warning, "backup_under_retired_epoch", productID: try row.decode(at: 0),
                                              deviceID: device, fingerprint: try row.decode(at: 2), objectKey: try row.decode(at: 3),
                                              message: "the backup of device \(device) is encrypted to retired epoch \(epoch): `keyline custody rotate` moves it to the current epoch"))
            }
        }
        // A `.gN.age` object is either a rotation's (recorded as a generation) or the first backup of
        // a key whose path an unrecorded object blocked (write-ahead escrow; its registration or
        // its job's committed intent names it). One that nothing names was written and never recorded.
        try await audit.snapshot.forEachBatch("""
            SELECT e.product_id, e.device_id, e.public_key_sha256, e.object_key
            FROM escrow_objects e
            WHERE e.object_key ~ '\\.g[0-9]+\\.age$' AND ($1::text IS NULL OR e.product_id = $1)
              AND NOT EXISTS (SELECT 1 FROM escrow_object_generations g WHERE g.escrow_object_id = e.id)
              AND NOT EXISTS (SELECT 1 FROM key_registrations r WHERE r.escrow_object_id = e.id)
              AND NOT EXISTS (SELECT 1 FROM escrow_intents i WHERE i.committed_object_id = e.id)
            ORDER BY e.id
            """, [product], batchSize: audit.batchSize) { rows in
            for row in rows {
                let key: String = try row.decode(at: 3)
                try await report(AuditFinding(.error, "generation_not_registered", productID: try row.decode(at: 0),
                                              deviceID: try row.decode(at: 1), fingerprint: try row.decode(at: 2), objectKey: key,
                                              message: "escrow object \(key) is a later generation that no registration, rotation or job records: it was written and never recorded"))
            }
        }
        // Custody is not per product: reported with every audit.
        for row in try await audit.snapshot.query("""
            SELECT p.name, s.threshold, count(c.id) FILTER (WHERE l.share_id IS NULL) AS reachable, count(c.id) AS shares,
                   string_agg(c.custodian, ', ' ORDER BY c.x) FILTER (WHERE l.share_id IS NOT NULL) AS lost
            FROM escrow_epochs p
            LEFT JOIN custody_share_sets s ON s.epoch_id = p.id AND s.status = 'active'
            LEFT JOIN custody_shares c ON c.share_set_id = s.id
            LEFT JOIN custody_share_losses l ON l.share_id = c.id
            WHERE p.status = 'active'
            GROUP BY p.id, p.name, s.threshold
            HAVING s.threshold IS NULL OR count(c.id) FILTER (WHERE l.share_id IS NULL) <= s.threshold
            ORDER BY p.id
            """) {
            let epoch: String = try row.decode(at: 0)
            guard let threshold: Int = try row.decode(at: 1) else {
                try await report(AuditFinding(.error, "epoch_without_shares",
                                              message: "escrow epoch \(epoch) has no active share set: nobody can recover it"))
                continue
            }
            let reachable: Int = try row.decode(at: 2)
            let lost: String? = try row.decode(at: 4)
            let lostText = lost.map { " (lost: \($0))" } ?? ""
            if reachable < threshold {
                try await report(AuditFinding(.error, "epoch_short_of_custodians",
                                              message: "escrow epoch \(epoch) needs \(threshold) shares but only \(reachable) custodians are reachable\(lostText): its backups cannot be recovered; restore what you can and rotate"))
            } else {
                try await report(AuditFinding(.warning, "epoch_at_threshold",
                                              message: "escrow epoch \(epoch) has exactly \(threshold) reachable custodians\(lostText): one more loss and it cannot be recovered; reshare now"))
            }
        }
    }
}
