import Audit
import CommandReporting
import Foundation
import Registry

/// `keyline audit --format`.
enum AuditFormat: String, CaseIterable, Sendable {
    case table, csv, json
}

/// Writes the audit in one of the formats, streaming: registrations as they come, then the
/// findings from the spool, then the totals. Warnings and progress go to standard error.
final class AuditWriter: AuditOutput {
    let format: AuditFormat
    let out: StreamingOutput
    private var first = true
    private var storeCheckProgress: TerminalProgress?

    init(format: AuditFormat, out: StreamingOutput) {
        self.format = format
        self.out = out
    }

    static let csvColumns = ["record", "severity", "code", "product", "device_id", "platform", "algorithm", "fingerprint",
                             "registered_at", "job", "station", "status", "escrow_object", "message"]

    func loginNotReadOnly(_ login: AuditPrivileges) {
        let rights = login.superuser ? "is a superuser" : login.bypassesRowSecurity ? "bypasses row-level security"
            : "may write (\(login.writes.prefix(6).joined(separator: ", "))\(login.writes.count > 6 ? ", …" : ""))"
        FileHandle.standardError.write(Data("keyline: warning: the login \(login.user) \(rights); an audit needs only the read-only keyline_auditor role\n".utf8))
    }

    func begin(login: AuditPrivileges) throws {
        switch format {
        case .table:
            Self.pad(["DEVICE", "PRODUCT", "PLATFORM", "ALG", "FINGERPRINT", "REGISTERED", "JOB", "STATION", "STATUS",
                      "ESCROW OBJECT"], out)
        case .csv:
            out.text(Self.csvColumns.joined(separator: ",") + "\n")
        case .json:
            let loginJSON = Self.json(["user": login.user, "read_only": login.isReadOnly, "superuser": login.superuser,
                                       "extra_rights": login.writes])
            out.text("{\"login\":\(loginJSON),\n\"registrations\":[")
        }
        try out.endRecord()
    }

    /// One registration, formatted byte by byte (this runs once per row of a million-row audit).
    func key(_ key: AuditedKey) throws {
        switch format {
        case .table:
            Self.pad([key.deviceID, key.productID, key.platform ?? "-", key.algorithm, String(key.fingerprint.prefix(16)) + "…",
                      key.registeredAt, key.jobID.map(String.init) ?? "-", key.station, key.status, key.objectKey ?? "NONE"], out)
        case .csv:
            out.text("registration,,,")
            out.csvField(key.productID)
            out.byte(0x2c)
            out.csvField(key.deviceID)
            out.byte(0x2c)
            out.csvField(key.platform ?? "")
            out.byte(0x2c)
            out.csvField(key.algorithm)
            out.byte(0x2c)
            out.csvField(key.fingerprint)
            out.byte(0x2c)
            out.csvField(key.registeredAt)
            out.byte(0x2c)
            if let job = key.jobID { out.int(job) }
            out.byte(0x2c)
            out.csvField(key.station)
            out.byte(0x2c)
            out.csvField(key.status)
            out.byte(0x2c)
            out.csvField(key.objectKey ?? "")
            out.byte(0x2c)
            out.csvField(key.statusReason ?? "")
            out.byte(0x0a)
        case .json:
            out.text(first ? "\n{\"registration_id\":" : ",\n{\"registration_id\":")
            first = false
            out.int(key.registrationID)
            out.jsonField("product", key.productID)
            out.jsonField("device_id", key.deviceID)
            out.jsonField("algorithm", key.algorithm)
            out.jsonField("fingerprint", key.fingerprint)
            out.jsonField("registered_at", key.registeredAt)
            out.jsonField("station", key.station)
            out.jsonField("status", key.status)
            out.jsonField("escrow_object_id", key.escrowObjectID)
            if let platform = key.platform { out.jsonField("platform", platform) }
            if let job = key.jobID { out.jsonField("job", job) }
            if let reason = key.statusReason { out.jsonField("status_reason", reason) }
            if let object = key.objectKey { out.jsonField("escrow_object", object) }
            if let store = key.storeURI { out.jsonField("store", store) }
            if let sha = key.ciphertextSHA256 { out.jsonField("ciphertext_sha256", sha) }
            out.byte(UInt8(ascii: "}"))
        }
        try out.endRecord()
    }

    /// `--check-store`'s progress, on a terminal only.
    func progress(_ event: StoreCheckProgress) {
        switch event {
        case .started(.hashingRecorded, let store, let total): storeCheckProgress = TerminalProgress("checking \(store)", total: total)
        case .started(.listingForOrphans, let store, let total): storeCheckProgress = TerminalProgress("looking for orphans in \(store)", total: total)
        case .advanced(_, let count): storeCheckProgress?.advance(by: count)
        case .finished:
            storeCheckProgress?.finish()
            storeCheckProgress = nil
        }
    }

    func finish(findings: FindingSpool, registrations: Int, statuses: [String: Int]) throws {
        let counts = findings.counts
        let out = out
        switch format {
        case .table:
            if registrations == 0 { out.text("(no registered keys in scope)\n") }
            out.text("\nFINDINGS\n")
            if findings.total == 0 { out.text("none: every registered key has an intact record\n") }
            try findings.forEach { finding in
                out.padded(finding.severity.rawValue.uppercased(), 8)
                out.padded(finding.code, 27)
                out.text(" " + finding.message + "\n")
                try out.endRecord()
            }
            let status = statuses.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
            out.text("\n\(registrations) registered keys" + (status.isEmpty ? "" : " (\(status))")
                     + "; \(counts[.error] ?? 0) errors, \(counts[.warning] ?? 0) warnings, \(counts[.info] ?? 0) notes\n")
        case .csv:
            try findings.forEach { finding in
                out.text("finding,")
                for field in [finding.severity.rawValue, finding.code, finding.productID ?? "", finding.deviceID ?? "", "", "",
                              finding.fingerprint ?? "", "", finding.jobID.map(String.init) ?? "", "", "", finding.objectKey ?? ""] {
                    out.csvField(field)
                    out.byte(0x2c)
                }
                out.csvField(finding.message)
                out.byte(0x0a)
                try out.endRecord()
            }
        case .json:
            out.text((first ? "" : "\n") + "],\n\"findings\":[")
            var firstFinding = true
            try findings.forEach { finding in
                out.text(firstFinding ? "\n{" : ",\n{")
                firstFinding = false
                // Keys in sorted order, as a JSON encoder with .sortedKeys would write them.
                out.jsonField("code", finding.code, comma: false)
                if let device = finding.deviceID { out.jsonField("deviceID", device) }
                if let fingerprint = finding.fingerprint { out.jsonField("fingerprint", fingerprint) }
                if let job = finding.jobID { out.jsonField("jobID", job) }
                out.jsonField("message", finding.message)
                if let object = finding.objectKey { out.jsonField("objectKey", object) }
                if let product = finding.productID { out.jsonField("productID", product) }
                out.jsonField("severity", finding.severity.rawValue)
                out.byte(UInt8(ascii: "}"))
                try out.endRecord()
            }
            let summary = Self.json([
                "registrations": registrations, "statuses": statuses,
                "errors": counts[.error] ?? 0, "warnings": counts[.warning] ?? 0, "notes": counts[.info] ?? 0,
                "codes": findings.codes,
            ])
            out.text((firstFinding ? "" : "\n") + "],\n\"summary\":\(summary)}\n")
        }
        try out.flush()
    }

    // MARK: Formatting

    static let widths = [24, 12, 8, 3, 17, 20, 6, 14, 10, 0]

    static func pad(_ fields: [String], _ out: StreamingOutput) {
        for (index, (field, width)) in zip(fields, widths).enumerated() {
            if index > 0 { out.byte(0x20) }
            out.padded(field, width)
        }
        out.byte(0x0a)
    }

    static func json(_ object: [String: Any]) -> String {
        (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
            .map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }
}

extension AuditWriter {
    /// RFC 4180: fields with a comma, quote or line break are quoted, quotes doubled (for the
    /// small outputs; the audit's rows go through `StreamingOutput.csvField`).
    static func csvLine(_ fields: [String]) -> String {
        fields.map { field in
            field.utf8.contains(where: { $0 == 0x2c || $0 == 0x22 || $0 == 0x0a || $0 == 0x0d })
                ? "\"" + field.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : field
        }.joined(separator: ",") + "\n"
    }
}
