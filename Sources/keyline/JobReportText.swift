import Foundation
import Audit

/// `keyline report --format table|json` (CSV is Audit's `JobReport.csv()`, shared with the
/// dashboard; the HTML page is JobReportHTML.swift).
extension JobReport {
    // MARK: Table

    func table() -> String {
        var out = "job \(job) · product \(product) · station \(station) · \(pipeline) · \(status)\n"
        out += "started \(startedAt.formatted(.iso8601))" + (finishedAt.map { ", finished \($0.formatted(.iso8601))" } ?? "") + "\n\n"
        let header = ["PORT", "DEVICE", "PLATFORM", "OUTCOME", "ATTEMPTS", "SECONDS", "STEPS (start+duration s)"]
        out += pad(header)
        for device in devices {
            let steps = device.steps.map { "\($0.step) \(Self.seconds($0.start))+\(Self.seconds($0.seconds))"
                + ($0.attempts > 1 ? " ×\($0.attempts)" : "") + ($0.outcome == "failed" ? " FAILED" : "") }
            out += pad([device.port, device.deviceID, device.platform ?? "-", device.outcome, String(device.attempts),
                        Self.seconds(device.seconds), steps.joined(separator: ", ")])
            if let reason = device.reason, device.outcome != "done" {
                out += "    " + (device.failedStep.map { "\($0): " } ?? "") + reason + "\n"
            }
            if let cloud = device.cloud {
                out += "    cloud: \(cloud)" + (device.cloudReason.map { " (\($0))" } ?? "") + "\n"
            }
        }
        out += "\n\(totals.devices) devices: \(totals.done) done, \(totals.failed) failed, \(totals.unfinished) unfinished\n"
        out += "wall time \(Self.seconds(totals.wallSeconds)) s, \(String(format: "%.1f", totals.throughputPerMinute)) devices/min, "
            + "up to \(totals.peakParallel) at once, parallel efficiency \(Int((totals.parallelEfficiency * 100).rounded()))% (devices done)\n"
        return out
    }

    private func pad(_ fields: [String]) -> String {
        zip(fields, [10, 24, 8, 10, 8, 8, 0]).map { field, width in
            width == 0 ? field : field.padding(toLength: max(width, field.count), withPad: " ", startingAt: 0)
        }.joined(separator: " ") + "\n"
    }

    func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return String(decoding: try encoder.encode(self), as: UTF8.self) + "\n"
    }
}
