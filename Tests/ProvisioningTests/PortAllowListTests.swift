import Age
import DeviceBus
import Escrow
import Foundation
import ParticlePlatform
import Provisioning
import Registry
import Simulator
import Testing
import TestSupport

/// The pipeline's `ports:` list (issue 23, ports-contract.md): parsing, and the runner leaving a
/// device on any other port untouched.
@Suite struct PortAllowListParsing {
    @Test func portsWithAndWithoutNamesAreRead() throws {
        let scratch = try PipelineScratch()
        let p = try scratch.load(validPhoton + ["ports:", "  - path: \"1-1.2\"", "    name: \"slot 1\"", "  - 1-1.3", "  - {path: 2-4}"])
        let ports = try #require(p.ports)
        #expect(ports.ports == [.init(path: "1-1.2", name: "slot 1"), .init(path: "1-1.3", name: nil), .init(path: "2-4", name: nil)])
        #expect(ports.permits(portPath: "1-1.2") && ports.permits(portPath: "2-4"))
        #expect(!ports.permits(portPath: "1-1.9") && !ports.permits(portPath: "1-1"))
        #expect(ports.name(forPortPath: "1-1.2") == "slot 1")
        #expect(ports.name(forPortPath: "1-1.3") == nil && ports.name(forPortPath: "1-1.9") == nil)
    }

    @Test func withoutTheKeyEveryPortIsPermitted() throws {
        let p = try PipelineScratch().load(validPhoton)
        #expect(p.ports == nil)
    }

    @Test func everyBadEntryIsReportedWithTheFileAndItsKey() throws {
        let scratch = try PipelineScratch()
        let problems = scratch.problems(validPhoton + [
            "ports:",
            "  - path: \"1-1.2\"",      // 0 fine
            "  - path: \"1-1.2\"",      // 1 duplicate
            "  - path: \"\"",           // 2 empty
            "  - path: \"usb3\"",       // 3 malformed
            "  - name: \"no path\"",    // 4 missing path
            "  - path: 1-1.5",
            "    name: \"\"",           // 5 empty name
            "  - path: 1-1.6",
            "    nmae: typo",           // 6 unknown key
        ])
        let file = scratch.dir.path("pipeline.yaml")
        #expect(problems.allSatisfy { $0.file == file && $0.line > 0 }, "\(problems)")
        #expect(problems.contains { $0.keyPath == "ports[1].path" && $0.message.contains("listed twice") && $0.message.contains("ports[0].path") })
        #expect(problems.contains { $0.keyPath == "ports[2].path" && $0.message.contains("no value") })
        #expect(problems.contains { $0.keyPath == "ports[3].path" && $0.message.contains("'usb3' is not a USB port path") })
        #expect(problems.contains { $0.keyPath == "ports[4].path" && $0.message == "missing" })
        #expect(problems.contains { $0.keyPath == "ports[5].name" && $0.message.contains("port name") })
        #expect(problems.contains { $0.keyPath == "ports[6].nmae" && $0.advice.contains("did you mean 'name'") })
        #expect(problems.count == 6, "\(problems)")
    }

    @Test func anEmptyListOrAScalarIsRefused() throws {
        let scratch = try PipelineScratch()
        #expect(scratch.problems(validPhoton + ["ports: []"]).contains { $0.keyPath == "ports" && $0.message.contains("empty") })
        #expect(scratch.problems(validPhoton + ["ports: 1-1.2"]).contains { $0.keyPath == "ports" && $0.message.contains("expected a list") })
    }

    @Test func theListAloneLoadsWithoutTheRestOfThePipeline() throws {
        let scratch = try PipelineScratch()
        // No firmware, recipients or store: `keyline devices --pipeline` needs none of them.
        try scratch.dir.write("jig.yaml", Array("platform: photon\nfirmware: [missing.bin]\nports:\n  - {path: 1-1.1, name: left}\n".utf8))
        let ports = try PipelineLoader.loadPorts(path: scratch.dir.path("jig.yaml"), environment: [:])
        #expect(ports == PortAllowList(ports: [.init(path: "1-1.1", name: "left")]))
        try scratch.dir.write("none.yaml", Array("platform: photon\n".utf8))
        #expect(try PipelineLoader.loadPorts(path: scratch.dir.path("none.yaml"), environment: [:]) == nil)
        try scratch.dir.write("bad.yaml", Array("ports:\n  - 1-1.1\n  - 1-1.1\n".utf8))
        #expect(throws: PipelineValidationError.self) { try PipelineLoader.loadPorts(path: scratch.dir.path("bad.yaml"), environment: [:]) }
    }
}

@Suite("Port allow-list in the runner", .serialized)
struct PortAllowListRunnerTests {
    final class Events: @unchecked Sendable {
        private let lock = NSLock()
        private var list: [ProvisioningEvent] = []
        func append(_ event: ProvisioningEvent) { lock.withLock { list.append(event) } }
        var all: [ProvisioningEvent] { lock.withLock { list } }
    }

    static func pipeline(in scratch: ScratchDirectory, identity: X25519Identity) throws -> PipelineDefinition {
        try scratch.write("photon-user.bin", SyntheticFirmware.make(platform: .photon, function: .userPart, index: 1, size: nil))
        try scratch.write("recipients.txt", Array((identity.recipient.description + "\n").utf8))
        let yaml = """
            name: jig
            product: {id: jig, name: Jig test}
            platform: photon
            firmware: [photon-user.bin]
            server: {key: particle}
            key_mode: host
            escrow: {recipients: recipients.txt, store: store}
            concurrency: 4
            retries: {attempts: 2, initial_backoff: 10ms, max_backoff: 50ms}
            station: jig-station
            ports:
              - {path: "1-1.1", name: "slot 1"}
            """
        try scratch.write("pipeline.yaml", Array(yaml.utf8))
        return try PipelineLoader.load(path: scratch.path("pipeline.yaml"), environment: [:], overrides: .none)
    }

    @Test("a device on a port outside the list is not touched, is shown as not permitted, and is recorded once",
          .timeLimit(.minutes(2)))
    func deviceOutsideTheListIsUntouched() async throws {
        try await TestPostgres.withMigratedDatabase { registry in
            let scratch = try ScratchDirectory(label: "ports")
            let definition = try Self.pipeline(in: scratch, identity: X25519Identity.generate())
            let fleet = try SimulatedFleet(timeScale: 0, seed: 23)
            let permittedPort = USBPortPath(bus: 1, ports: [1, 1]), outsidePort = USBPortPath(bus: 1, ports: [1, 9])
            try fleet.add(.photon, at: permittedPort, mode: .dfu)
            // In DFU mode, so nothing but keyline could change it (Device OS makes a key at first boot).
            try fleet.add(.photon, at: outsidePort, mode: .dfu)
            let outside = try #require(fleet.device(at: outsidePort))
            let slotBefore = outside.privateKeySlot()
            let statsBefore = outside.statistics
            let events = Events()
            let runner = ProvisioningRunner(definition: definition, registry: registry,
                                            store: DirectoryEscrowStore(root: scratch.file("store")), bus: fleet,
                                            options: ProvisioningOptions(reenumerationTimeout: .seconds(5)),
                                            stop: StopSignal(), events: { events.append($0) })
            let summary = try await runner.run()

            // The permitted device ran, and every event about its port carries the port's name.
            let done = try #require(summary.devices.first { $0.port == "1-1.1" })
            #expect(done.outcome == .done, "\(done.reason ?? "")")
            let permittedEvents = events.all.filter { $0.port == "1-1.1" }
            #expect(!permittedEvents.isEmpty && permittedEvents.allSatisfy { $0.portName == "slot 1" })
            #expect(permittedEvents.first?.jsonLine().contains(#""portName":"slot 1""#) == true)

            // The other: one not-permitted event, a skipped report, and nothing done to the device.
            let refused = events.all.filter { $0.type == .portNotPermitted }
            #expect(refused.count == 1)
            #expect(refused.first?.port == "1-1.9" && refused.first?.deviceID == outside.deviceID && refused.first?.portName == nil)
            #expect(refused.first?.jsonLine().contains(#""type":"port_not_permitted""#) == true)
            #expect(refused.first?.message?.contains("not permitted") == true)
            #expect(!events.all.contains { $0.port == "1-1.9" && $0.type != .portNotPermitted })
            let skipped = try #require(summary.devices.first { $0.port == "1-1.9" })
            #expect(skipped.outcome == .skipped && skipped.reason?.contains("not permitted") == true)
            let statsAfter = outside.statistics
            #expect(statsAfter.controlTransfers == statsBefore.controlTransfers)
            #expect(statsAfter.sectorsErased == 0 && statsAfter.bytesProgrammed == 0 && statsAfter.keysGenerated == statsBefore.keysGenerated)
            #expect(outside.currentMode == .dfu)
            #expect(outside.privateKeySlot() == slotBefore)
            let doneID = try #require(done.deviceID)
            #expect(try await registry.jobDevices(jobID: summary.jobID).map(\.deviceID) == [doneID])

            // The audit trail: once, with the station, the device and the port.
            let recorded = try await registry.events(jobID: summary.jobID).filter { $0.kind == "port.not_permitted" }
            #expect(recorded.count == 1)
            #expect(recorded.first?.station == "jig-station" && recorded.first?.deviceID == outside.deviceID)
            #expect(recorded.first?.detail == ["port": "1-1.9"])
        }
    }
}
