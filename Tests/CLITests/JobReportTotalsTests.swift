import Audit
import Foundation
@testable import Registry
import Testing

/// `keyline report`'s model (issue 21, "Smaller"): every try of a retried step is a bar, and the
/// parallel efficiency is that of the devices that finished, not dominated by one that failed.
@Suite struct JobReportTotalsTests {
    static let origin = Date(timeIntervalSince1970: 1_800_000_000)

    static func device(_ id: String, port: String, state: String, lastGood: String? = nil) -> JobDevice {
        JobDevice(jobID: 1, deviceID: id, state: state, lastGoodState: lastGood, attempts: 1,
                  lastError: state == "failed" ? "held, then given up" : nil, portPath: port, platform: "photon",
                  keyFingerprint: nil, station: "s", createdAt: origin, updatedAt: origin)
    }

    static func step(_ device: String, _ step: String, at start: Double, for seconds: Double, failed: Bool = false) -> StepRecord {
        StepRecord(jobID: 1, deviceID: device, step: step, startedAt: origin.addingTimeInterval(start), seconds: seconds,
                   attempts: 1, outcome: failed ? .failed : .done, reason: failed ? "USB timeout" : nil, station: "s")
    }

    @Test func everyTryIsDrawnAndEfficiencyIsOverFinishedDevices() {
        let (a, b, c) = ("a" + String(repeating: "0", count: 23), "b" + String(repeating: "0", count: 23),
                         "c" + String(repeating: "0", count: 23))
        let job = Job(id: 1, productID: "p", station: "s", pipeline: "x", status: .completed, startedAt: Self.origin,
                      finishedAt: Self.origin)
        // a and b: 10 s each, side by side; a's flash failed once and ran again. c held 100 s and failed.
        let steps = [
            Self.step(a, "flash", at: 0, for: 2, failed: true), Self.step(a, "flash", at: 2, for: 8),
            Self.step(b, "flash", at: 0, for: 10),
            Self.step(c, "escrow", at: 0, for: 100, failed: true),
        ]
        let report = JobReport(job: job, devices: [Self.device(a, port: "1-1.1", state: "done"),
                                                   Self.device(b, port: "1-1.2", state: "done"),
                                                   Self.device(c, port: "1-1.3", state: "failed", lastGood: "key_ready")],
                               steps: steps)
        let first = report.devices.first { $0.deviceID == a }!
        #expect(first.steps.map(\.step) == ["flash", "flash"])
        #expect(first.steps.map(\.retried) == [true, false])
        #expect(report.devices.first { $0.deviceID == c }!.steps.map(\.retried) == [false])
        #expect(report.devices.first { $0.deviceID == c }!.failedStep == "escrow")
        // Over a and b: 20 s of steps in 10 s on 2 ports. With c it would be 120 / (100 × 3) = 0.4.
        #expect(abs(report.totals.parallelEfficiency - 1.0) < 1e-9, "\(report.totals)")
        #expect(report.totals.wallSeconds == 100 && report.totals.done == 2 && report.totals.failed == 1)
    }
}
