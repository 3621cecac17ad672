import FailurePolicy
import Foundation
import Testing
@testable import Escrow
@testable import EscrowS3

/// Write-once depends on the server honouring If-None-Match: a server that does not is detected
/// before the first object is put, and refused (S3EscrowStore+ConditionalPut.swift).
@Suite(.serialized) struct S3ConditionalPutTests {
    @Test func aServerThatIgnoresIfNoneMatchIsRefusedBeforeAnyObjectIsPut() async throws {
        // The proxy drops If-None-Match from every PUT: moto then overwrites, as such a server would.
        let proxy = try FaultProxy(stripIfNoneMatch: true)
        defer { Task { try? await proxy.stop() } }
        let store = try await S3TestServer.store(prefix: "escrow", endpoint: proxy.endpoint)
        let key = try S3TestServer.key(70)
        do {
            _ = try await store.put(S3TestServer.bytes("first"), at: key)
            Issue.record("a store that overwrites was used")
        } catch let error as EscrowStoreError {
            guard case .unsafeStore(let path, let problem) = error else { Issue.record("\(error)"); return }
            #expect(path == "s3://\(store.settings.bucket)/escrow/\(S3EscrowStore.probeName)")
            #expect(problem.contains("does not honour conditional writes"))
            #expect(error.failureClass == .needsOperator)
        }
        // Nothing was escrowed there, and every later put is refused the same way.
        let direct = try S3EscrowStore(uri: "s3://\(store.settings.bucket)/escrow", environment: S3TestServer.environment())
        #expect(try await direct.contains(key) == false)
        await #expect(throws: EscrowStoreError.self) { _ = try await store.put(S3TestServer.bytes("again"), at: key) }
        #expect(try await direct.contains(key) == false)
    }

    @Test func aProbeRefusedForAnotherReasonStopsThePutFailingClosed() async throws {
        // A 403 on the probe's name alone (a bucket policy): before, the put went on unchecked.
        let proxy = try FaultProxy(forbidProbe: true)
        defer { Task { try? await proxy.stop() } }
        let store = try await S3TestServer.store(prefix: "escrow", endpoint: proxy.endpoint)
        let key = try S3TestServer.key(71)
        await #expect {
            _ = try await store.put(S3TestServer.bytes("unchecked"), at: key)
        } throws: { error in
            guard case S3StoreError.http(_, _, let name, 403, _, _, _) = error else { return false }
            return name.hasSuffix(S3EscrowStore.probeName) && (error as? S3StoreError)?.failureClass == .needsOperator
        }
        #expect(proxy.faults.contains { $0.hasPrefix("fault forbid-probe PUT") })
        let direct = try S3EscrowStore(uri: "s3://\(store.settings.bucket)/escrow", environment: S3TestServer.environment())
        #expect(try await direct.contains(key) == false)
    }

    @Test func aServerThatHonoursItPassesTheProbeOnceAndListingsLeaveTheProbeOut() async throws {
        let store = try await S3TestServer.store(prefix: "escrow")
        // 16 concurrent first puts share one probe; each object is written.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for n in 0..<16 { group.addTask { _ = try await store.put(S3TestServer.bytes("\(n)"), at: try S3TestServer.key(100 + n)) } }
            try await group.waitForAll()
        }
        let listing = try await store.listObjects(under: nil, continuationToken: nil)
        #expect(listing.keys.count == 16 && listing.next == nil)
        #expect(!listing.keys.contains(S3EscrowStore.probeName))
        #expect(try await store.contents(ofObjectAt: S3EscrowStore.probeName) == S3EscrowStore.probeBytes)
        // A second store value probes again and finds the probe in place: still fine.
        let again = try S3EscrowStore(uri: "s3://\(store.settings.bucket)/escrow", environment: S3TestServer.environment())
        _ = try await again.put(S3TestServer.bytes("late"), at: try S3TestServer.key(200))
    }

    @Test func listingsPageThroughMoreThanAThousandObjects() async throws {
        let store = try await S3TestServer.store(prefix: "many")
        try await withThrowingTaskGroup(of: Void.self) { group in
            var n = 0
            func add() { let i = n; n += 1; group.addTask { _ = try await store.put([UInt8(i & 0xff)], at: try S3TestServer.key(1000 + i)) } }
            for _ in 0..<16 { add() }
            while try await group.next() != nil { if n < 1_050 { add() } }
        }
        var names: [String] = []
        var continuation: String?
        var pages = 0
        repeat {
            let page = try await store.listObjects(under: nil, continuationToken: continuation)
            names += page.keys
            continuation = page.next
            pages += 1
        } while continuation != nil
        #expect(pages == 2)
        #expect(names.count == 1_050)
        // Byte order, as the audit's merge with the registry needs.
        #expect(names == names.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) })
    }
}
