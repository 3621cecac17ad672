import Audit
import Foundation
import Registry

/// Collects a registry-only `KeyAudit` for a page: the counts and the first `findingLimit`
/// findings (the rest are counted, not kept: a product may have millions of registrations).
final class AuditPageCollector: AuditOutput, @unchecked Sendable {
    let findingLimit: Int
    private(set) var login: AuditPrivileges?
    private(set) var findings: [AuditFinding] = []
    private(set) var counts: [AuditSeverity: Int] = [:]
    private(set) var registrations = 0
    private(set) var statuses: [String: Int] = [:]

    init(findingLimit: Int = 500) {
        self.findingLimit = findingLimit
    }

    func loginNotReadOnly(_ login: AuditPrivileges) {}
    func begin(login: AuditPrivileges) throws { self.login = login }
    func key(_ key: AuditedKey) throws {}
    func progress(_ progress: StoreCheckProgress) {}
    func finish(findings spool: FindingSpool, registrations: Int, statuses: [String: Int]) throws {
        self.registrations = registrations
        self.statuses = statuses
        counts = spool.counts
        var kept: [AuditFinding] = []
        try spool.forEach { finding in
            if kept.count < findingLimit { kept.append(finding) }
        }
        findings = kept
    }
}

/// The audit page (`/audit?product=P&station=S&actor=A&from=T&to=T`): `keyline audit`'s findings
/// for a product from the registry alone (no store check, no decryption), its restorations, and
/// the events filtered by station, actor and time.
/// Hooks: `#audit-form`, `#findings tr[data-severity][data-code]`, `#finding-counts [data-figure]`,
/// `#restorations tr[data-outcome]`, `#events tr[data-kind]`.
enum AuditPage {
    struct Query: Sendable {
        var product: String?
        var station: String?
        var actor: String?
        var from: Date?
        var to: Date?
    }

    static let eventLimit = 500

    static func page(query: Query, products: [String], audit: AuditPageCollector?, restorations: [Restoration],
                     events: [AuditEvent]) -> String {
        let e = HTMLText.escaped
        var out = "<h1>Audit</h1>\n<form id=\"audit-form\" method=\"get\" action=\"/audit\">"
            + "<label>product <select name=\"product\"><option value=\"\">–</option>"
        for product in products {
            out += "<option value=\"\(e(product))\"\(product == query.product ? " selected" : "")>\(e(product))</option>"
        }
        out += "</select></label> "
            + "<label>station <input name=\"station\" value=\"\(e(query.station ?? ""))\"></label> "
            + "<label>actor <input name=\"actor\" value=\"\(e(query.actor ?? ""))\"></label> "
            + "<label>from <input name=\"from\" placeholder=\"2026-12-07T06:00:00Z\" value=\"\(query.from.map(FloorPage.iso) ?? "")\"></label> "
            + "<label>to <input name=\"to\" value=\"\(query.to.map(FloorPage.iso) ?? "")\"></label> "
            + "<button type=\"submit\">show</button></form>\n"
        if let product = query.product, let audit {
            out += "<h2>Findings for \(e(product))</h2>\n<p id=\"finding-counts\">"
                + "<span data-figure=\"registrations\">\(audit.registrations)</span> registrations; "
                + AuditSeverity.allCases.reversed().map { "<span data-figure=\"\($0.rawValue)\">\(audit.counts[$0] ?? 0)</span> \($0.rawValue)" }
                    .joined(separator: ", ")
                + " (registry only: no store check, no decryption; `keyline audit` does both)</p>\n"
            out += "<table id=\"findings\"><tr><th>severity</th><th>code</th><th>device</th><th>job</th><th>message</th></tr>\n"
            for finding in audit.findings {
                out += "<tr data-severity=\"\(finding.severity.rawValue)\" data-code=\"\(e(finding.code))\">"
                    + "<td>\(finding.severity.rawValue)</td><td>\(e(finding.code))</td><td class=\"mono\">\(e(finding.deviceID ?? ""))</td>"
                    + "<td>\(finding.jobID.map { "<a href=\"/jobs/\($0)\">\($0)</a>" } ?? "")</td><td>\(e(finding.message))</td></tr>\n"
            }
            out += "</table>\n<h2>Restorations</h2>\n<table id=\"restorations\"><tr><th>time</th><th>device</th><th>bench</th>"
                + "<th>operator</th><th>outcome</th><th>reason</th><th>ticket</th></tr>\n"
            for restoration in restorations {
                out += "<tr data-outcome=\"\(e(restoration.outcome.rawValue))\"><td>\(FloorPage.iso(restoration.restoredAt))</td>"
                    + "<td class=\"mono\">\(e(restoration.deviceID))</td><td>\(e(restoration.station))</td><td>\(e(restoration.operator))</td>"
                    + "<td>\(e(restoration.outcome.rawValue))</td><td>\(e(restoration.reason ?? restoration.detail ?? ""))</td>"
                    + "<td>\(e(restoration.ticket ?? ""))</td></tr>\n"
            }
            out += "</table>\n"
        } else {
            out += "<p id=\"pick-product\">Pick a product to see its audit findings and restorations.</p>\n"
        }
        out += "<h2>Events</h2>\n<p>newest first, at most \(eventLimit)</p>\n" + JobPage.eventTable(events, id: "events")
        return HTMLPage.layout(title: "Audit", page: "audit", content: "<section id=\"audit\">\(out)</section>")
    }

    /// `2026-12-07T06:00:00Z`, or a date alone (`2026-12-07`, midnight UTC).
    static func parseTime(_ text: Substring?) -> Date? {
        guard let text, !text.isEmpty else { return nil }
        let value = String(text)
        if let date = try? Date(value, strategy: .iso8601) { return date }
        return try? Date(value + "T00:00:00Z", strategy: .iso8601)
    }
}
