import Foundation
import Testing
@testable import Escrow
@testable import EscrowS3

/// The station check's write-once probe on S3 (StoreWriteProbe, `keyline station check`): moto
/// refuses the second conditional put; a server that ignores If-None-Match is caught; audit
/// listings leave the probes out.
@Suite(.serialized) struct S3WriteProbeTests {
    @Test func aServerThatHonoursIfNoneMatchRefusesTheSecondWriteAndListingsSkipTheProbe() async throws {
        let store = try await S3TestServer.store(prefix: "escrow")
        let name = StoreWriteProbe.name(station: "line 3/a")
        #expect(name.hasPrefix("line_3_a-"))
        #expect(try await store.probeWriteOnce(name: name) == .secondWriteRefused)
        // Written once, where the probe says, with its own text.
        let stored = try await store.contents(ofObjectAt: "\(StoreWriteProbe.folder)/\(name)")
        #expect(stored == StoreWriteProbe.contents(name: name))
        // Beside a real object, the listing names only the object.
        let key = try S3TestServer.key(90)
        _ = try await store.put(S3TestServer.bytes("object"), at: key)
        let listed = try await store.listObjects(under: nil, continuationToken: nil).keys
        #expect(listed == [key.path], "\(listed)")
    }

    @Test func aServerThatIgnoresIfNoneMatchIsCaughtByTheProbe() async throws {
        let proxy = try FaultProxy(stripIfNoneMatch: true)
        defer { Task { try? await proxy.stop() } }
        let store = try await S3TestServer.store(prefix: "escrow", endpoint: proxy.endpoint)
        #expect(try await store.probeWriteOnce(name: StoreWriteProbe.name(station: "s")) == .secondWriteAccepted)
    }

    @Test func aStoreThatRefusesTheWriteThrowsItsOwnError() async throws {
        // A bucket that does not exist: the first write fails, with the store's error.
        let store = try S3EscrowStore(uri: "s3://kl-missing-\(UInt32.random(in: 1 ... .max))/escrow", environment: S3TestServer.environment())
        await #expect(throws: S3StoreError.self) { _ = try await store.probeWriteOnce(name: StoreWriteProbe.name(station: "s")) }
    }
}
