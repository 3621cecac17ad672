import Foundation
import Registry
import Testing
import TestSupport

/// Issue 21, item 13: while the escrow store is away, devices hold with a visible "store
/// unreachable, holding" status (as for the database) and finish when it returns, rather than
/// failing after the pipeline's retry attempts.
@Suite("keyline provision: the escrow store away", .serialized)
struct StoreOutageTests {
    /// A free loopback port (bound, read, released): the store's address while nothing answers there.
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw CLITestFailure("socket: errno \(errno)") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw CLITestFailure("bind: errno \(errno)") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    @Test("an S3 store that is away holds the device past the retry attempts; it finishes when the store is back",
          .timeLimit(.minutes(5)))
    func s3StoreAwayHolds() async throws {
        let line = try await ProvisionLine(seed: 97) { fleet in
            try fleet.add(.photon, at: ProvisionTests.port(1, 1), mode: .dfu)
        }
        defer { Task { await line.stop() } }
        // The store's address answers nothing until the test puts a proxy to the server there.
        let port = try Self.freePort()
        let endpoint = "http://127.0.0.1:\(port)"
        try await ProvisionS3Tests.useS3(line, through: endpoint)
        // Short back-offs between the holds' tries.
        let shipped = try String(contentsOfFile: ProvisionLine.pipeline("photon-factory.yaml"), encoding: .utf8)
        let pipeline = line.scratch.url.appendingPathComponent("photon-outage.yaml")
        try shipped.replacingOccurrences(of: "max_backoff: 30s", with: "max_backoff: 1s")
            .write(to: pipeline, atomically: true, encoding: .utf8)
        try await ProvisionS3Tests.waitForDevices(line, 1)

        let run = try RunningKeyline(line, ["provision", pipeline.path, "--json"], label: "store-away")
        let held = try await run.waitForEvents(within: .seconds(120)) { events in
            events.contains { $0["type"] as? String == "held" && ($0["message"] as? String ?? "").contains("store unreachable, holding") }
        }
        try #require(held, "no device was held while the store was away\n\(run.stderr)\n\(run.stdout.suffix(3000))")
        // The station's heartbeat says so (the dashboard's "store holding" alarm, issue 23).
        let registry = try await line.registry()
        try await waitUntil(deadline: .seconds(120), "the heartbeat saying the store holds") {
            try await registry.stationStatuses().contains { $0.storeState == "holding" && $0.jobID != nil }
        }
        // Held, not retried toward a failure: the pipeline's retry attempts are not spent on the store.
        #expect(!run.events.contains { $0["type"] as? String == "retrying" && $0["step"] as? String == "escrow" })

        // The store comes back at the same address.
        let proxy = Process()
        proxy.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        proxy.arguments = ["python3", ProvisionLine.packageRoot.appendingPathComponent("Tests/EscrowS3Tests/Fixtures/s3-fault-proxy.py").path,
                           "--port", "\(port)", "--upstream", try EscrowS3CLITests.endpoint().replacingOccurrences(of: "http://", with: "")]
        proxy.standardOutput = FileHandle.nullDevice
        try proxy.run()
        defer { if proxy.isRunning { kill(proxy.processIdentifier, SIGKILL) } }

        let result = try await run.finish(within: .seconds(180))
        #expect(result.status == 0, "\(result.stderr)\n\(result.stdout.suffix(3000))")
        let summary = try #require(ProvisionLine.summary(result))
        let reports = summary["devices"] as? [[String: Any]] ?? []
        #expect(reports.map { $0["outcome"] as? String } == ["done"], "\(reports)")
        #expect(ProvisionLine.events(result).contains { ($0["message"] as? String ?? "").contains("the escrow store is back") })
        // The run's last heartbeat: the store answers, and no job runs (its silence is no alarm).
        let last = try await registry.stationStatuses()
        #expect(last.count == 1 && last.first?.storeState == "ok" && last.first?.jobID == nil, "\(last)")
        try await line.checkInvariants(product: try ProvisionLine.productID(ProvisionLine.pipeline("photon-factory.yaml")),
                                       devices: line.fleet.allDevices.map(\.device))
    }
}
