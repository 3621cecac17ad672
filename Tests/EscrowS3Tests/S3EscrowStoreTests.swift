import FailurePolicy
import Foundation
import Testing
@testable import Escrow
@testable import Age
@testable import EscrowS3

/// S3EscrowStore against the local S3 server (moto 5.x, `make s3-up`). moto enforces
/// `If-None-Match: *` and Object Lock (mode and retain-until date on HEAD; a locked version cannot
/// be deleted), but it does not verify `x-amz-checksum-sha256` against the body (it stores the
/// value sent) and does not check signatures; the signer is checked against the SigV4 suite instead.
@Suite(.serialized) struct S3EscrowStoreTests {
    func outcome(_ body: @Sendable () async throws -> String) async -> Result<String, any Error> {
        do { return .success(try await body()) } catch { return .failure(error) }
    }

    @Test func putWritesTheDirectoryStoresKeysUnderThePrefix() async throws {
        let store = try await S3TestServer.store(prefix: "factory/escrow")
        let key = try S3TestServer.key()
        let bytes = S3TestServer.bytes("one")
        #expect(try await store.contains(key) == false)
        let digest = try await store.put(bytes, at: key)
        #expect(digest == Age.sha256(bytes))
        #expect(try await store.contains(key))
        #expect(try await store.get(key, expectedSHA256: digest) == bytes)
        #expect(store.settings.objectName(key) == "factory/escrow/\(key.path)")
        #expect(store.storeURI == "s3://\(store.settings.bucket)/factory/escrow")
        // The object is at exactly that key (read without the store's helpers).
        let raw = try await store.read("factory/escrow/acme-sensor/\(key.deviceID)/\(key.publicKeySHA256).age")
        #expect(raw == bytes)
        await #expect(throws: EscrowStoreError.checksumMismatch(key, expected: String(repeating: "0", count: 64), actual: digest)) {
            try await store.get(key, expectedSHA256: String(repeating: "0", count: 64))
        }
        #expect(try await store.sweepStaleTemporaryFiles(olderThan: .zero) == 0)
    }

    @Test func identicalBytesAgainCountAsWritten() async throws {
        let store = try await S3TestServer.store()
        let key = try S3TestServer.key(1)
        let bytes = S3TestServer.bytes("same")
        let first = try await store.put(bytes, at: key)
        #expect(try await store.put(bytes, at: key) == first)
    }

    @Test func differentBytesAreRefusedAndTheObjectKept() async throws {
        let store = try await S3TestServer.store()
        let key = try S3TestServer.key(2)
        let original = S3TestServer.bytes("original")
        let stored = try await store.put(original, at: key)
        let other = S3TestServer.bytes("other")
        await #expect(throws: EscrowStoreError.objectExists(key, storedSHA256: stored, newSHA256: Age.sha256(other))) {
            try await store.put(other, at: key)
        }
        #expect(try await store.get(key, expectedSHA256: stored) == original)
    }

    /// Two stations escrow different bytes to the same keys at the same moment: for every key
    /// exactly one put returns, the other is refused, and the stored object is the winner's.
    @Test func conditionalPutRaceBetweenTwoStations() async throws {
        let stationA = try await S3TestServer.store()
        let stationB = S3EscrowStore(settings: stationA.settings, credentials: stationA.client.credentials)
        let keys = try (0..<12).map { n throws in try S3TestServer.key(100 + n) }
        for key in keys {
            let a = S3TestServer.bytes("station A \(key.deviceID)"), b = S3TestServer.bytes("station B \(key.deviceID)")
            async let resultA = outcome { try await stationA.put(a, at: key) }
            async let resultB = outcome { try await stationB.put(b, at: key) }
            let (outcomeA, outcomeB) = await (resultA, resultB)
            let winners = [(outcomeA, a), (outcomeB, b)].filter { (try? $0.0.get()) != nil }
            #expect(winners.count == 1, "key \(key): \(outcomeA) / \(outcomeB)")
            for (outcome, _) in [(outcomeA, a), (outcomeB, b)] {
                if case .failure(let error) = outcome {
                    guard case EscrowStoreError.objectExists = error else { Issue.record("unexpected \(error)"); continue }
                }
            }
            if let winner = winners.first {
                #expect(try await stationA.get(key, expectedSHA256: Age.sha256(winner.1)) == winner.1)
            }
        }
    }

    /// A run crashed after its put reached the store: the redone escrow adopts the object by the
    /// recorded hash; nothing there is false; other bytes there need a person.
    @Test func adoptionAfterACrash() async throws {
        let store = try await S3TestServer.store()
        let key = try S3TestServer.key(3)
        #expect(try await store.adopt(key, expectedSHA256: Age.sha256([1])) == false)
        let bytes = S3TestServer.bytes("crashed run")
        let recorded = try await store.put(bytes, at: key)
        #expect(try await store.adopt(key, expectedSHA256: recorded.uppercased()))
        let wrong = Age.sha256(S3TestServer.bytes("redone"))
        await #expect(throws: EscrowStoreError.checksumMismatch(key, expected: wrong, actual: recorded)) {
            try await store.adopt(key, expectedSHA256: wrong)
        }
    }

    @Test func objectLockRetentionIsSetAndReadBack() async throws {
        let store = try await S3TestServer.store(query: "?lock=COMPLIANCE&retain-days=2", objectLock: true)
        let key = try S3TestServer.key(4)
        let before = Date()
        _ = try await store.put(S3TestServer.bytes("locked"), at: key)
        let retention = try #require(try await store.retention(of: key))
        #expect(retention.mode == "COMPLIANCE")
        let until = try #require(ISO8601DateFormatter().date(from: retention.retainUntil))
        #expect(abs(until.timeIntervalSince(before) - 2 * 86_400) < 120)

        let governance = try await S3TestServer.store(query: "?lock=governance&retain-days=1", objectLock: true)
        _ = try await governance.put(S3TestServer.bytes("governed"), at: key)
        #expect(try await governance.retention(of: key)?.mode == "GOVERNANCE")
        // Without a lock setting, no retention.
        let plain = try await S3TestServer.store()
        _ = try await plain.put(S3TestServer.bytes("plain"), at: key)
        #expect(try await plain.retention(of: key) == nil)
    }

    @Test func lockOnABucketWithoutObjectLockNeedsAnOperator() async throws {
        let store = try await S3TestServer.store(query: "?lock=COMPLIANCE&retain-days=1", objectLock: false)
        let key = try S3TestServer.key(5)
        do {
            _ = try await store.put(S3TestServer.bytes("x"), at: key)
            Issue.record("a locked put into a bucket without Object Lock succeeded")
        } catch let error as S3StoreError {
            #expect(error.failureClass == .needsOperator)
            #expect(error.description.contains(store.settings.bucket) && error.description.contains(key.path))
            #expect(error.description.contains("HTTP 400"))
        }
    }

    @Test func missingBucketNamesBucketKeyAndCode() async throws {
        let store = try S3EscrowStore(uri: "s3://\(S3TestServer.bucketName())/p", environment: S3TestServer.environment())
        let key = try S3TestServer.key(6)
        do {
            _ = try await store.put(S3TestServer.bytes("x"), at: key)
            Issue.record("put into a missing bucket succeeded")
        } catch let error as S3StoreError {
            let text = error.description
            // The conditional-put probe is the first request, and fails closed: its error names it.
            #expect(text.contains("NoSuchBucket") && text.contains(store.settings.bucket) && text.contains("p/\(S3EscrowStore.probeName)"))
            #expect(!text.contains("keyline-test-secret"))
            #expect(error.failureClass == .needsOperator)
        }
    }
}
