import Foundation
import Registry

/// `keyline audit --format`.
enum AuditFormat: String, CaseIterable, Sendable {
    case table, csv, json
}

/// Buffered standard output: rows are written as they stream in, a block at a time.
final class StreamingOutput {
    private var buffer: [UInt8] = []
    private let handle: FileHandle

    init(_ handle: FileHandle = .standardOutput) {
        self.handle = handle
        buffer.reserveCapacity(1 << 16)
    }

    func write(_ text: String) {
        buffer.append(contentsOf: text.utf8)
        if buffer.count >= 1 << 16 { flush() }
    }

    func flush() {
        guard !buffer.isEmpty else { return }
        handle.write(Data(buffer))
        buffer.removeAll(keepingCapacity: true)
    }
}

/// Findings kept on disk (an unlinked temporary file) while the listing streams, so they can be
/// printed after it without holding them in memory; counted by severity.
final class FindingSpool {
    private let file: UnsafeMutablePointer<FILE>
    private(set) var counts: [AuditSeverity: Int] = [:]
    private(set) var codes: [String: Int] = [:]
    private let encoder = JSONEncoder()

    init() throws {
        guard let file = tmpfile() else {
            throw CommandFailure(kind: "cannotWrite", message: "cannot create a temporary file for the findings (\(String(cString: strerror(errno))))",
                                 exit: .ioError)
        }
        self.file = file
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    }

    deinit { fclose(file) }

    var total: Int { counts.values.reduce(0, +) }

    func add(_ finding: AuditFinding) {
        counts[finding.severity, default: 0] += 1
        codes[finding.code, default: 0] += 1
        guard let data = try? encoder.encode(finding) else { return }
        _ = data.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
        fputc(0x0a, file)
    }

    /// Every finding, in the order added.
    func forEach(_ body: (AuditFinding) -> Void) {
        fflush(file)
        rewind(file)
        var line: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(line) }
        let decoder = JSONDecoder()
        while getline(&line, &capacity, file) > 0, let line {
            let data = Data(bytes: line, count: strlen(line))
            if let finding = try? decoder.decode(AuditFinding.self, from: data) { body(finding) }
        }
    }
}

/// Writes the audit in one of the formats, streaming: registrations as they come, then the
/// findings from the spool, then the totals.
struct AuditWriter {
    let format: AuditFormat
    let out: StreamingOutput
    private var first = true

    init(format: AuditFormat, out: StreamingOutput) {
        self.format = format
        self.out = out
    }

    static let csvColumns = ["record", "severity", "code", "product", "device_id", "platform", "algorithm", "fingerprint",
                             "registered_at", "job", "station", "status", "escrow_object", "message"]

    mutating func begin(login: AuditPrivileges) {
        switch format {
        case .table:
            out.write(Self.pad(["DEVICE", "PRODUCT", "PLATFORM", "ALG", "FINGERPRINT", "REGISTERED", "JOB", "STATION",
                                "STATUS", "ESCROW OBJECT"]))
        case .csv:
            out.write(Self.csvColumns.joined(separator: ",") + "\n")
        case .json:
            let loginJSON = Self.json(["user": login.user, "read_only": login.isReadOnly, "superuser": login.superuser,
                                       "extra_rights": login.writes])
            out.write("{\"login\":\(loginJSON),\n\"registrations\":[")
        }
    }

    mutating func key(_ key: AuditedKey) {
        let registered = key.registeredAt
        switch format {
        case .table:
            out.write(Self.pad([key.deviceID, key.productID, key.platform ?? "-", key.algorithm,
                                String(key.fingerprint.prefix(16)) + "…", registered, key.jobID.map(String.init) ?? "-",
                                key.station, key.status, key.objectKey ?? "NONE"]))
        case .csv:
            out.write(Self.csvLine(["registration", "", "", key.productID, key.deviceID, key.platform ?? "", key.algorithm,
                                    key.fingerprint, registered, key.jobID.map(String.init) ?? "", key.station, key.status,
                                    key.objectKey ?? "", key.statusReason ?? ""]))
        case .json:
            var fields = ["\"registration_id\":\(key.registrationID)", "\"product\":" + Self.quoted(key.productID),
                          "\"device_id\":" + Self.quoted(key.deviceID), "\"algorithm\":" + Self.quoted(key.algorithm),
                          "\"fingerprint\":" + Self.quoted(key.fingerprint), "\"registered_at\":" + Self.quoted(registered),
                          "\"station\":" + Self.quoted(key.station), "\"status\":" + Self.quoted(key.status),
                          "\"escrow_object_id\":\(key.escrowObjectID)"]
            if let platform = key.platform { fields.append("\"platform\":" + Self.quoted(platform)) }
            if let job = key.jobID { fields.append("\"job\":\(job)") }
            if let reason = key.statusReason { fields.append("\"status_reason\":" + Self.quoted(reason)) }
            if let object = key.objectKey { fields.append("\"escrow_object\":" + Self.quoted(object)) }
            if let store = key.storeURI { fields.append("\"store\":" + Self.quoted(store)) }
            if let sha = key.ciphertextSHA256 { fields.append("\"ciphertext_sha256\":" + Self.quoted(sha)) }
            out.write((first ? "\n{" : ",\n{") + fields.joined(separator: ",") + "}")
            first = false
        }
    }

    mutating func finish(findings: FindingSpool, registrations: Int, statuses: [String: Int]) {
        let counts = findings.counts
        switch format {
        case .table:
            if registrations == 0 { out.write("(no registered keys in scope)\n") }
            out.write("\nFINDINGS\n")
            if findings.total == 0 { out.write("none: every registered key has an intact record\n") }
            findings.forEach { finding in
                out.write(finding.severity.rawValue.uppercased().padding(toLength: 8, withPad: " ", startingAt: 0)
                          + finding.code.padding(toLength: 27, withPad: " ", startingAt: 0) + " " + finding.message + "\n")
            }
            let status = statuses.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
            out.write("\n\(registrations) registered keys" + (status.isEmpty ? "" : " (\(status))")
                      + "; \(counts[.error] ?? 0) errors, \(counts[.warning] ?? 0) warnings, \(counts[.info] ?? 0) notes\n")
        case .csv:
            findings.forEach { finding in
                out.write(Self.csvLine(["finding", finding.severity.rawValue, finding.code, finding.productID ?? "",
                                        finding.deviceID ?? "", "", "", finding.fingerprint ?? "", "",
                                        finding.jobID.map(String.init) ?? "", "", "", finding.objectKey ?? "", finding.message]))
            }
        case .json:
            out.write((first ? "" : "\n") + "],\n\"findings\":[")
            var firstFinding = true
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            findings.forEach { finding in
                let text = (try? encoder.encode(finding)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
                out.write((firstFinding ? "\n" : ",\n") + text)
                firstFinding = false
            }
            let summary = Self.json([
                "registrations": registrations, "statuses": statuses,
                "errors": counts[.error] ?? 0, "warnings": counts[.warning] ?? 0, "notes": counts[.info] ?? 0,
                "codes": findings.codes,
            ])
            out.write((firstFinding ? "" : "\n") + "],\n\"summary\":\(summary)}\n")
        }
        out.flush()
    }

    // MARK: Formatting

    static let widths = [24, 12, 8, 3, 17, 20, 6, 14, 10, 0]

    static func pad(_ fields: [String]) -> String {
        zip(fields, widths).map { field, width in
            width == 0 ? field : field.padding(toLength: max(width, field.count), withPad: " ", startingAt: 0)
        }.joined(separator: " ") + "\n"
    }

    /// RFC 4180: fields with a comma, quote or line break are quoted, quotes doubled.
    static func csvLine(_ fields: [String]) -> String {
        fields.map { field in
            field.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" })
                ? "\"" + field.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : field
        }.joined(separator: ",") + "\n"
    }

    static func json(_ object: [String: Any]) -> String {
        (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
            .map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    /// A JSON string literal (RFC 8259 §7).
    static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
