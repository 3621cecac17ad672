import Provisioning
import Testing

@Suite("The pipeline's cloud section")
struct PipelineCloudTests {
    @Test("Without a cloud section every key is queued, and nothing requires a token")
    func defaults() throws {
        let scratch = try PipelineScratch()
        let definition = try scratch.load(validPhoton)
        #expect(!definition.cloud.configured)
        #expect(definition.cloud.upload == .all)
        #expect(definition.cloud.queues(for: .host) && definition.cloud.queues(for: .device))
        #expect(!definition.cloud.requireAccepted)
    }

    @Test("Its settings are read and checked; generated keys only leaves a device-mode line's keys alone")
    func settings() throws {
        let scratch = try PipelineScratch()
        let definition = try scratch.load(validPhoton + [
            "cloud:", "  upload: generated", "  api_url: http://127.0.0.1:8080", "  token_file: secrets/token",
            "  in_flight: 8", "  drain_timeout: 90s", "  require_accepted: true", "  product_membership: false",
        ])
        #expect(definition.cloud.configured)
        #expect(definition.cloud.queues(for: .host) && !definition.cloud.queues(for: .device))
        #expect(definition.cloud.apiURL == "http://127.0.0.1:8080")
        #expect(definition.cloud.tokenFile == scratch.dir.path("secrets/token"))
        #expect(definition.cloud.inFlight == 8 && definition.cloud.drainTimeout == .seconds(90))
        #expect(definition.cloud.requireAccepted && !definition.cloud.joinProduct)
        let problems = scratch.problems(validPhoton + [
            "cloud:", "  upload: sometimes", "  api_url: http://api.particle.io", "  in_flight: 0", "  require_accepted: maybe",
        ])
        #expect(problems.map(\.keyPath) == ["cloud.upload", "cloud.api_url", "cloud.in_flight", "cloud.require_accepted"])
        #expect(problems.first { $0.keyPath == "cloud.api_url" }?.message.contains("clear text") == true)
    }
}
