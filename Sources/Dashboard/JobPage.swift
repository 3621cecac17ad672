import Audit
import Foundation
import Registry

/// A job (`/jobs/{id}`): `keyline report`'s model (Audit's `JobReport`) as a page, with each
/// device's log (its steps and its events) to drill into, and the CSV export `/jobs/{id}.csv`.
/// Hooks: `#job[data-job]`, `#job-summary [data-figure]`, `#csv-export`, `#devices tr[data-device][data-state]`,
/// `.device-log[data-device]` with `.steps tr[data-step]` and `.events tr[data-kind]`.
enum JobPage {
    static func page(_ report: JobReport, events: [AuditEvent]) -> String {
        HTMLPage.layout(title: "Job \(report.job)", page: "job", bodyAttributes: " data-job=\"\(report.job)\"",
                        content: "<section id=\"job\" data-job=\"\(report.job)\" data-live-url=\"/jobs/\(report.job)?fragment=1\">"
                            + fragment(report, events: events) + "</section>")
    }

    static func fragment(_ report: JobReport, events: [AuditEvent]) -> String {
        let e = HTMLText.escaped
        let t = report.totals
        var out = "<h1>Job \(report.job) · \(e(report.product)) · station \(e(report.station))</h1>\n"
        out += "<table id=\"job-summary\">"
            + row("pipeline", e(report.pipeline)) + row("status", "<span data-figure=\"status\">\(e(report.status))</span>")
            + row("started", FloorPage.iso(report.startedAt))
            + row("finished", report.finishedAt.map(FloorPage.iso) ?? "–")
            + row("devices", "<span data-figure=\"devices\">\(t.devices)</span>: <span data-figure=\"done\">\(t.done)</span> done, "
                  + "<span data-figure=\"failed\">\(t.failed)</span> failed, <span data-figure=\"unfinished\">\(t.unfinished)</span> unfinished")
            + row("wall time", "\(JobReport.seconds(t.wallSeconds)) s")
            + row("throughput", "\(String(format: "%.1f", t.throughputPerMinute)) devices/min, up to \(t.peakParallel) at once")
            + "</table>\n"
        out += "<p><a id=\"csv-export\" href=\"/jobs/\(report.job).csv\" download>CSV export</a> "
            + "(the same bytes as <code>keyline report \(report.job) --format csv</code>)</p>\n"
        out += "<table id=\"devices\"><tr><th>port</th><th>device</th><th>platform</th><th>outcome</th><th>state</th>"
            + "<th>attempts</th><th>seconds</th><th>reason</th><th>cloud</th></tr>\n"
        for device in report.devices {
            out += "<tr id=\"device-\(e(device.deviceID))\" data-device=\"\(e(device.deviceID))\" data-state=\"\(e(device.outcome))\">"
                + "<td class=\"mono\">\(e(device.port))</td><td class=\"mono\"><a href=\"#log-\(e(device.deviceID))\">\(e(device.deviceID))</a></td>"
                + "<td>\(e(device.platform ?? "–"))</td><td>\(e(device.outcome))</td><td>\(e(device.state))</td>"
                + "<td>\(device.attempts)</td><td>\(JobReport.seconds(device.seconds))</td>"
                + "<td>\(e((device.failedStep.map { "\($0): " } ?? "") + (device.outcome == "done" ? "" : device.reason ?? "")))</td>"
                + "<td>\(e(device.cloud ?? "–"))\(device.cloudReason.map { " (\(e($0)))" } ?? "")</td></tr>\n"
        }
        out += "</table>\n<h2>Device logs</h2>\n"
        let byDevice = Dictionary(grouping: events.filter { $0.deviceID != nil }, by: { $0.deviceID! })
        for device in report.devices {
            out += "<details class=\"device-log\" id=\"log-\(e(device.deviceID))\" data-device=\"\(e(device.deviceID))\">"
                + "<summary>\(e(device.port)) · \(e(device.deviceID)) · \(e(device.outcome))</summary>\n"
                + "<table class=\"steps\"><tr><th>step</th><th>start s</th><th>seconds</th><th>attempts</th><th>outcome</th><th>reason</th></tr>\n"
            for step in device.steps {
                out += "<tr data-step=\"\(e(step.step))\" data-outcome=\"\(e(step.outcome))\"><td>\(e(step.step))</td>"
                    + "<td>\(JobReport.seconds(step.start))</td><td>\(JobReport.seconds(step.seconds))</td><td>\(step.attempts)</td>"
                    + "<td>\(e(step.outcome))\(step.retried ? " (retried)" : "")</td><td>\(e(step.reason ?? ""))</td></tr>\n"
            }
            out += "</table>\n" + eventTable(byDevice[device.deviceID] ?? [], id: nil) + "</details>\n"
        }
        return out
    }

    /// Events as a table, oldest first as given. `detail` holds small string facts (never key
    /// material: the registry's rule for events).
    static func eventTable(_ events: [AuditEvent], id: String?) -> String {
        let e = HTMLText.escaped
        var out = "<table class=\"events\"\(id.map { " id=\"\($0)\"" } ?? "")><tr><th>time</th><th>kind</th><th>station</th>"
            + "<th>actor</th><th>device</th><th>job</th><th>detail</th></tr>\n"
        for event in events {
            let detail = event.detail.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            out += "<tr data-event=\"\(event.id)\" data-kind=\"\(e(event.kind))\"><td>\(FloorPage.iso(event.occurredAt))</td>"
                + "<td>\(e(event.kind))</td><td>\(e(event.station ?? "–"))</td><td>\(e(event.actor))</td>"
                + "<td class=\"mono\">\(e(event.deviceID ?? ""))</td><td>\(event.jobID.map(String.init) ?? "")</td>"
                + "<td>\(e(detail))</td></tr>\n"
        }
        return out + "</table>\n"
    }

    private static func row(_ label: String, _ html: String) -> String { "<tr><th>\(label)</th><td>\(html)</td></tr>" }
}
