import Foundation
import Registry

/// How a job went, built from the registry: its devices, the steps each ran with their timings,
/// and the totals (`keyline report JOB`).
struct JobReport: Codable {
    struct Step: Codable {
        var step: String
        /// Seconds from the start of the batch.
        var start: Double
        var seconds: Double
        var attempts: Int
        var outcome: String
        var reason: String?
        var startedAt: Date
    }

    struct Device: Codable {
        var port: String
        var deviceID: String
        var platform: String?
        /// The device's state now: done, failed, or the state an unfinished device stopped in.
        var outcome: String
        var state: String
        var attempts: Int
        var failedStep: String?
        var reason: String?
        var fingerprint: String?
        var steps: [Step]
        /// From its first step's start to its last step's end.
        var seconds: Double
    }

    struct Totals: Codable {
        var devices: Int
        var done: Int
        var failed: Int
        var unfinished: Int
        /// From the first step's start to the last step's end.
        var wallSeconds: Double
        /// Sum over devices of the time their steps ran.
        var busySeconds: Double
        /// Most devices running at once.
        var peakParallel: Int
        /// Devices done per minute of wall time.
        var throughputPerMinute: Double
        /// busy / (wall × peak parallel): 1 when every port worked the whole time.
        var parallelEfficiency: Double
    }

    var job: Int64
    var product: String
    var station: String
    var pipeline: String
    var status: String
    var startedAt: Date
    var finishedAt: Date?
    var devices: [Device]
    var totals: Totals

    init(job: Job, devices jobDevices: [JobDevice], steps: [StepRecord]) {
        self.job = job.id
        product = job.productID
        station = job.station
        pipeline = job.pipeline
        status = job.status.rawValue
        startedAt = job.startedAt
        finishedAt = job.finishedAt
        let origin = steps.map(\.startedAt).min() ?? job.startedAt
        let byDevice = Dictionary(grouping: steps, by: \.deviceID)
        devices = jobDevices.map { device in
            let records = (byDevice[device.deviceID] ?? []).sorted { $0.startedAt < $1.startedAt }
            let timed = records.map { record in
                Step(step: record.step, start: record.startedAt.timeIntervalSince(origin), seconds: record.seconds,
                     attempts: record.attempts, outcome: record.outcome.rawValue, reason: record.reason,
                     startedAt: record.startedAt)
            }
            let first = timed.map(\.start).min() ?? 0
            let last = timed.map { $0.start + $0.seconds }.max() ?? 0
            let failedStep = device.state == "failed" ? timed.last(where: { $0.outcome == "failed" }) : nil
            return Device(port: device.portPath ?? "-", deviceID: device.deviceID, platform: device.platform,
                          outcome: device.state == "done" ? "done" : device.state == "failed" ? "failed" : "unfinished",
                          state: device.lastGoodState.map { "failed after \($0)" } ?? device.state,
                          attempts: device.attempts, failedStep: failedStep?.step,
                          reason: device.lastError ?? failedStep?.reason, fingerprint: device.keyFingerprint,
                          steps: timed, seconds: max(0, last - first))
        }.sorted { ($0.port, $0.deviceID) < ($1.port, $1.deviceID) }
        totals = Self.totals(devices)
    }

    static func totals(_ devices: [Device]) -> Totals {
        let spans = devices.compactMap { device -> (Double, Double)? in
            guard let first = device.steps.map(\.start).min(),
                  let last = device.steps.map({ $0.start + $0.seconds }).max() else { return nil }
            return (first, last)
        }
        let wall = max(0, (spans.map(\.1).max() ?? 0) - (spans.map(\.0).min() ?? 0))
        let busy = devices.reduce(0) { $0 + $1.steps.reduce(0) { $0 + $1.seconds } }
        // Sweep the device spans for the most that overlap.
        var edges: [(time: Double, change: Int)] = []
        for (start, end) in spans {
            edges.append((start, 1))
            edges.append((end, -1))
        }
        edges.sort { left, right in left.time != right.time ? left.time < right.time : left.change < right.change }
        var running = 0
        var peak = 0
        for edge in edges {
            running += edge.change
            peak = max(peak, running)
        }
        let done = devices.filter { $0.outcome == "done" }.count
        let failed = devices.filter { $0.outcome == "failed" }.count
        return Totals(devices: devices.count, done: done, failed: failed, unfinished: devices.count - done - failed,
                      wallSeconds: wall, busySeconds: busy, peakParallel: peak,
                      throughputPerMinute: wall > 0 ? Double(done) * 60 / wall : 0,
                      parallelEfficiency: wall > 0 && peak > 0 ? min(1, busy / (wall * Double(peak))) : 0)
    }

    static func seconds(_ value: Double) -> String { String(format: "%.2f", value) }

    // MARK: Table and CSV

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
        }
        out += "\n\(totals.devices) devices: \(totals.done) done, \(totals.failed) failed, \(totals.unfinished) unfinished\n"
        out += "wall time \(Self.seconds(totals.wallSeconds)) s, \(String(format: "%.1f", totals.throughputPerMinute)) devices/min, "
            + "up to \(totals.peakParallel) at once, parallel efficiency \(Int((totals.parallelEfficiency * 100).rounded()))%\n"
        return out
    }

    private func pad(_ fields: [String]) -> String {
        zip(fields, [10, 24, 8, 10, 8, 8, 0]).map { field, width in
            width == 0 ? field : field.padding(toLength: max(width, field.count), withPad: " ", startingAt: 0)
        }.joined(separator: " ") + "\n"
    }

    /// One line per step (a device without steps gets one line), device fields repeated.
    func csv() -> String {
        var out = "job,port,device_id,platform,outcome,device_attempts,reason,step,step_start_s,step_seconds,step_attempts,step_outcome,step_reason\n"
        for device in devices {
            let base = [String(job), device.port, device.deviceID, device.platform ?? "", device.outcome,
                        String(device.attempts), device.reason ?? ""]
            if device.steps.isEmpty { out += AuditWriter.csvLine(base + ["", "", "", "", "", ""]) }
            for step in device.steps {
                out += AuditWriter.csvLine(base + [step.step, Self.seconds(step.start), Self.seconds(step.seconds),
                                                   String(step.attempts), step.outcome, step.reason ?? ""])
            }
        }
        return out
    }

    func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return String(decoding: try encoder.encode(self), as: UTF8.self) + "\n"
    }
}
