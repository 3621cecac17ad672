import Foundation

extension RegistryAudit {
    /// `keys doctor` runs that recorded their intent and never registered the key (issue 21 item
    /// 6): the device may hold a key the cloud does not know. The next `keys doctor` on the device
    /// finishes it. In product scope (`--product`), and since `--since` when given.
    public func forEachInterruptedDoctorFinding(_ body: (AuditFinding) async throws -> Void) async throws {
        try await snapshot.forEachBatch("""
            SELECT device_id, product_id, new_fingerprint, previous_fingerprint, station, created_at
            FROM key_doctor_intents
            WHERE outcome IS NULL AND ($1::text IS NULL OR product_id = $1) AND ($2::timestamptz IS NULL OR created_at >= $2)
            ORDER BY created_at, id
            """, [scope.productID, scope.since], batchSize: batchSize) { rows in
            for row in rows {
                let (device, product, fingerprint): (String, String, String) =
                    (try row.decode(at: 0), try row.decode(at: 1), try row.decode(at: 2))
                let previous: String? = try row.decode(at: 3)
                let station: String = try row.decode(at: 4)
                try await body(AuditFinding(.warning, "keys_doctor_interrupted", productID: product, deviceID: device,
                                            fingerprint: fingerprint,
                                            message: "keys doctor on \(station) was about to load key \(fingerprint) (escrowed) into device \(device)"
                                                + (previous.map { ", replacing \($0)," } ?? "")
                                                + " and never registered it: the device may hold a key nobody registered; run `keyline keys doctor \(device)` again to finish it"))
            }
        }
    }
}
