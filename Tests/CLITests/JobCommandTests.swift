import Foundation
import Testing
import TestSupport

/// `keyline job abandon|reopen` (issue 21 items 1 and 3) with the real binary: a device unplugged
/// for good keeps `--resume` failing (exit 3, named) until an operator abandons it; the resume
/// then completes the job and the report says the device was abandoned.
@Suite("keyline job", .serialized)
struct JobCommandTests {
    @Test("a gone device fails every resume until abandoned; then the job completes and the report shows it abandoned")
    func abandonUnblocksResume() async throws {
        let line = try await ProvisionLine(timeScale: 0.05, seed: 33) { fleet in
            for index in 1...2 { try fleet.add(.photon, at: ProvisionTests.port(1, index), mode: .dfu) }
        }
        defer { Task { await line.stop() } }
        let victim = try #require(line.fleet.device(at: ProvisionTests.port(1, 1)))
        let unplugger = Task {
            try await waitUntil(poll: .milliseconds(5), "victim.statistics.bytesProgrammed > 0") { victim.statistics.bytesProgrammed > 0 }
            victim.unplug()
        }
        let pipeline = ProvisionLine.pipeline("photon-factory.yaml")
        let run = try await line.keyline(["provision", pipeline, "--json", "--timeout", "2"])
        try await unplugger.value
        #expect(run.status == 3, "\(run.stderr)")
        let job = try #require(ProvisionLine.summary(run)?["jobID"] as? Int)

        // The victim never comes back: the resume names it and exits 3.
        let resumed = try await line.keyline(["provision", pipeline, "--json", "--timeout", "2", "--resume", String(job)])
        #expect(resumed.status == 3, "\(resumed.stderr)")
        let named = (ProvisionLine.summary(resumed)?["devices"] as? [[String: Any]] ?? [])
            .first { $0["deviceID"] as? String == victim.deviceID }
        #expect((named?["reason"] as? String)?.contains("did not appear") == true, "\(resumed.stdout)")

        let noReason = try await line.keyline(["job", "abandon", String(job), victim.deviceID])
        #expect(noReason.status == 64, "\(noReason.stderr)")
        let abandoned = try await line.keyline(["job", "abandon", String(job), victim.deviceID, "--reason", "board lost on the line",
                                                "--json"]).requireSuccess()
        #expect(abandoned.stdout.contains("\"abandoned\":true"), "\(abandoned.stdout)")
        let again = try await line.keyline(["job", "abandon", String(job), victim.deviceID, "--reason", "twice"])
        #expect(again.status == 65, "\(again.stderr)")

        let finished = try await line.keyline(["provision", pipeline, "--json", "--timeout", "2", "--resume", String(job)])
        #expect(finished.status == 0, "\(finished.stderr)\n\(finished.stdout)")
        let report = try await line.keyline(["report", String(job), "--format", "json"]).requireSuccess()
        let object = try #require(try JSONSerialization.jsonObject(with: Data(report.stdout.utf8)) as? [String: Any])
        #expect(object["status"] as? String == "completed")
        let device = (object["devices"] as? [[String: Any]] ?? []).first { $0["deviceID"] as? String == victim.deviceID }
        #expect(device?["outcome"] as? String == "abandoned")
        #expect((device?["reason"] as? String)?.contains("board lost on the line") == true)
    }
}
