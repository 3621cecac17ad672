import Foundation
import Testing
@testable import Age
@testable import EscrowS3

/// What `keyline audit --check-store` reads from an S3 store: ListObjectsV2 a page at a time
/// (continuation tokens followed to the end, keys relative to the prefix, one product or all),
/// and each object's SHA-256 as stored now.
@Suite struct S3AuditListingTests {
    @Test func listingFollowsEveryPageUnderThePrefixAndProduct() async throws {
        let store = try await S3TestServer.store(prefix: "line/escrow")
        var mine: Set<String> = []
        for n in 0..<5 {
            let key = try S3TestServer.key(n)
            _ = try await store.put(S3TestServer.bytes("object \(n)"), at: key)
            mine.insert(key.path)
        }
        let other = try S3TestServer.key(9, product: "other-product")
        _ = try await store.put(S3TestServer.bytes("other"), at: other)
        // An object outside the prefix is not the store's.
        let outside = try S3EscrowStore(uri: "s3://\(store.settings.bucket)/elsewhere", environment: S3TestServer.environment())
        _ = try await outside.put(S3TestServer.bytes("outside"), at: try S3TestServer.key(7))

        func all(_ product: String?) async throws -> (keys: [String], pages: Int) {
            var keys: [String] = []
            var token: String?
            var pages = 0
            repeat {
                let page = try await store.listObjects(under: product, continuationToken: token, maxKeys: 2)
                keys += page.keys
                token = page.next
                pages += 1
            } while token != nil
            return (keys, pages)
        }
        let product = try await all("acme-sensor")
        #expect(product.pages == 3)
        #expect(product.keys.count == 5)
        #expect(Set(product.keys) == mine)
        let everything = try await all(nil)
        #expect(Set(everything.keys) == mine.union([other.path]))

        let first = try S3TestServer.key(0)
        #expect(try await store.sha256(ofObjectAt: first.path) == Age.sha256(S3TestServer.bytes("object 0")))
        #expect(try await store.sha256(ofObjectAt: "acme-sensor/none.age") == nil)
    }
}
