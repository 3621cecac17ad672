import Age
import ParticlePlatform
import Provisioning
import FailurePolicy
import Foundation
import Simulator
import Testing
import TestSupport

/// A scratch station: firmware, recipients and store next to a pipeline file.
final class PipelineScratch {
    let dir: ScratchDirectory
    let recipient = X25519Identity.generate().recipient

    init() throws {
        dir = try ScratchDirectory(label: "pipeline")
        try FileManager.default.createDirectory(at: dir.file("firmware"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: dir.file("escrow"), withIntermediateDirectories: true)
        try dir.write("recipients.txt", Array("# RMA bench\n\(recipient)\n".utf8))
        try firmware("photon-user.bin", .photon, .userPart, 1)
        try firmware("boron-user.bin", .boron, .userPart, 2)
    }

    func firmware(_ name: String, _ platform: Platform, _ function: ModuleFunction, _ index: UInt8, size: Int? = nil) throws {
        try dir.write("firmware/\(name)", SyntheticFirmware.make(platform: platform, function: function, index: index, size: size))
    }

    var environment: [String: String] {
        ["KEYLINE_FIRMWARE": dir.path("firmware"), "KEYLINE_RECIPIENTS": dir.path("recipients.txt"),
         "KEYLINE_ESCROW_STORE": dir.path("escrow")]
    }

    /// Writes `lines` as pipeline.yaml and loads it.
    func load(_ lines: [String], environment: [String: String]? = nil, overrides: PipelineOverrides = .none) throws(PipelineValidationError) -> PipelineDefinition {
        try? dir.write("pipeline.yaml", Array(lines.joined(separator: "\n").utf8))
        return try PipelineLoader.load(path: dir.path("pipeline.yaml"), environment: environment ?? self.environment, overrides: overrides)
    }

    func problems(_ lines: [String], environment: [String: String]? = nil) -> [PipelineProblem] {
        do {
            _ = try load(lines, environment: environment)
            return []
        } catch {
            return error.problems
        }
    }
}

/// A minimal valid Photon pipeline, relative paths.
let validPhoton = [
    "name: test-line",
    "product:",
    "  id: 42",
    "  name: Test",
    "platform: photon",
    "firmware:",
    "  - file: firmware/photon-user.bin",
    "escrow:",
    "  recipients: recipients.txt",
    "  store: escrow",
]

@Suite struct ShippedPipelines {
    static let pipelines = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("pipelines")

    @Test func photonFactoryLoads() throws {
        let scratch = try PipelineScratch()
        let p = try PipelineLoader.load(path: Self.pipelines.appendingPathComponent("photon-factory.yaml").path,
                                        environment: scratch.environment, overrides: .none)
        #expect(p.platform == .photon)
        #expect(p.serverKey.cloudProtocol == .tcp && p.serverKey.effectivePort == 5683)
        #expect(p.keyMode == .host)
        #expect(p.images.count == 1 && p.images[0].address == 0x080A_0000 && p.images[0].module?.function == .userPart)
        #expect(p.escrow.recipients == [scratch.recipient])
        #expect(p.escrow.store == scratch.dir.path("escrow"))
        #expect(p.concurrency == 16 && p.retries.attempts == 3)
        #expect(p.selection == .all)
        #expect(!p.station.isEmpty)
    }

    @Test func boronFactoryLoads() throws {
        let scratch = try PipelineScratch()
        let p = try PipelineLoader.load(path: Self.pipelines.appendingPathComponent("boron-factory.yaml").path,
                                        environment: scratch.environment, overrides: .none)
        #expect(p.platform == .boron)
        #expect(p.serverKey.cloudProtocol == .udp && p.serverKey.url == "udp://$id.udp.particle.io:5684")
        #expect(p.images.count == 1 && p.images[0].address == 0x000B_4000)
        #expect(p.escrow.recipients == [scratch.recipient])
    }

    @Test func shippedPipelinesNameTheirMissingVariables() throws {
        do {
            _ = try PipelineLoader.load(path: Self.pipelines.appendingPathComponent("boron-factory.yaml").path, environment: [:], overrides: .none)
        } catch {
            #expect(error.problems.contains { $0.keyPath == "escrow.recipients" && $0.message.contains("KEYLINE_RECIPIENTS") })
            #expect(error.problems.contains { $0.keyPath == "escrow.store" && $0.message.contains("KEYLINE_ESCROW_STORE") })
            // The firmware default applies: ./firmware next to the pipeline, which does not exist.
            #expect(error.problems.contains { $0.keyPath == "firmware[0].file" && $0.message.contains("no such file") })
            #expect(error.problems.allSatisfy { $0.line > 0 })
            return
        }
        Issue.record("loaded without its variables")
    }
}

@Suite struct PipelineLoading {
    @Test func validPipelineResolvesPathsAgainstItsFolder() throws {
        let scratch = try PipelineScratch()
        let p = try scratch.load(validPhoton)
        #expect(p.name == "test-line")
        #expect(p.product.id == "42" && p.product.name == "Test")
        #expect(p.images[0].path == scratch.dir.path("firmware/photon-user.bin"))
        #expect(p.sourcePath == scratch.dir.path("pipeline.yaml"))
        #expect(p.serverKey.bytes == ParticleServerKeys.defaultBlob(for: .photon))
        #expect(p.database == nil)
    }

    @Test func overridesWin() throws {
        let scratch = try PipelineScratch()
        try scratch.dir.write("other.txt", Array("\(X25519Identity.generate().recipient)\n".utf8))
        let p = try scratch.load(validPhoton + ["station: line-1", "concurrency: 4", "database: postgres://file"],
                                 overrides: PipelineOverrides(database: "host=/tmp dbname=k", store: "s3://bucket/keys",
                                                              recipientsFile: scratch.dir.path("other.txt"), station: "line-7",
                                                              concurrency: 64))
        #expect(p.database == "host=/tmp dbname=k")
        #expect(p.escrow.store == "s3://bucket/keys")
        #expect(p.escrow.recipients != [scratch.recipient])
        #expect(p.station == "line-7")
        #expect(p.concurrency == 64)
    }

    @Test func overridesReplaceUnsetVariables() throws {
        let scratch = try PipelineScratch()
        let lines = validPhoton.map {
            $0.replacingOccurrences(of: "recipients: recipients.txt", with: "recipients: ${NOPE_RECIPIENTS}")
                .replacingOccurrences(of: "store: escrow", with: "store: ${NOPE_STORE}")
        }
        let p = try scratch.load(lines, overrides: PipelineOverrides(store: scratch.dir.path("escrow"),
                                                                     recipientsFile: scratch.dir.path("recipients.txt")))
        #expect(p.escrow.recipients == [scratch.recipient])
    }

    @Test func substitution() throws {
        let scratch = try PipelineScratch()
        let p = try scratch.load([
            "product: { id: '${PRODUCT_ID:-7}', name: '${PRODUCT_NAME}' }",
            "platform: ${PLATFORM:-photon}",
            "firmware: [ '${FW}/photon-user.bin' ]",
            "server: { host: '$id.example.com', port: 6000 }",
            "escrow: { recipients: '${R}', store: escrow }",
            "retries: { attempts: 5, initial_backoff: 250ms, max_backoff: 2m }",
            "devices: { ports: [1-1.2, 1-1.3], serials: ['0123456789abcdef01234567'] }",
        ], environment: ["PRODUCT_NAME": "Named", "FW": scratch.dir.path("firmware"), "R": "recipients.txt", "PLATFORM": ""])
        #expect(p.product.id == "7" && p.product.name == "Named")
        #expect(p.platform == .photon)
        #expect(p.serverKey.address?.host == "$id.example.com" && p.serverKey.port == 6000)
        #expect(p.retries == RetryPolicy(attempts: 5, initialBackoff: .milliseconds(250), maxBackoff: .seconds(120)))
        #expect(p.retries.backoff(beforeAttempt: 2) == .milliseconds(250) && p.retries.backoff(beforeAttempt: 4) == .seconds(1))
        #expect(p.selection.ports == ["1-1.2", "1-1.3"] && p.selection.includes(serial: "0123456789abcdef01234567", port: "1-1.2"))
        #expect(!p.selection.includes(serial: "0123456789abcdef01234567", port: "1-1.4"))
    }

    @Test func serverKeyFromFile() throws {
        let scratch = try PipelineScratch()
        try scratch.dir.write("server.der", Array(ParticleServerKeys.udpBlob.prefix(91)))
        try scratch.firmware("boron-user.bin", .boron, .userPart, 2)
        let lines = validPhoton.map {
            $0.replacingOccurrences(of: "photon", with: "boron")
        } + ["server:", "  key: server.der", "  host: 10.0.0.5", "  port: 5684"]
        let p = try scratch.load(lines)
        #expect(p.serverKey.url == "udp://10.0.0.5:5684")
    }
}
