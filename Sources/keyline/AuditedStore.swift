import Dispatch
import Escrow
import Foundation

/// What `audit --check-store` and `--decrypt` need from an escrow store, a directory or S3 alike:
/// its objects in byte order of their relative paths (the registry's `COLLATE "C"` order), and
/// objects' bytes or SHA-256 as they are now, many at a time.
protocol AuditedStore: Sendable {
    var storeURI: String { get }
    /// How the store is named in progress output.
    var label: String { get }
    func listing(under product: String?) -> any StoreListing
    /// The SHA-256 of each object, nil where there is none; in the order of `paths`.
    func sha256s(of paths: [String]) async -> [Result<String?, any Error>]
    /// The bytes of each object, nil where there is none; in the order of `paths`.
    func contents(of paths: [String]) async -> [Result<[UInt8]?, any Error>]
}

/// A walk through a store's object names: the next block in byte order; empty at the end.
protocol StoreListing: Sendable {
    func next() async throws -> [String]
}

extension DirectoryEscrowStore: AuditedStore {
    var label: String { root.path }

    func listing(under product: String?) -> any StoreListing { DirectoryListing(walk: objectWalk(under: product)) }

    func sha256s(of paths: [String]) async -> [Result<String?, any Error>] {
        await parallelMap(paths) { path in
            do { return .success(try self.sha256(ofObjectAt: path)) } catch { return .failure(error) }
        }
    }

    func contents(of paths: [String]) async -> [Result<[UInt8]?, any Error>] {
        let root = root
        return await parallelMap(paths) { path in
            .success(FileManager.default.contents(atPath: root.appendingPathComponent(path).path).map { Array($0) })
        }
    }
}

/// The directory walk, read a block at a time on a queue of its own (it blocks on the file system).
private final class DirectoryListing: StoreListing, @unchecked Sendable {
    private let walk: DirectoryObjectWalk
    private let queue = DispatchQueue(label: "keyline.audit.walk")

    init(walk: DirectoryObjectWalk) { self.walk = walk }

    func next() async throws -> [String] {
        let walk = walk
        return try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try walk.next(4_096) }) }
        }
    }
}

extension S3EscrowStore: AuditedStore {
    var label: String { storeURI }

    func listing(under product: String?) -> any StoreListing { S3Listing(store: self, product: product) }

    func sha256s(of paths: [String]) async -> [Result<String?, any Error>] {
        await contents(of: paths).map { result in result.map { bytes in bytes.map { Age.sha256($0) } } }
    }

    /// GetObject, 16 at a time (the client keeps up to 32 connections; the bench measures 16).
    func contents(of paths: [String]) async -> [Result<[UInt8]?, any Error>] {
        var results = [Result<[UInt8]?, any Error>](repeating: .success(nil), count: paths.count)
        await withTaskGroup(of: (Int, Result<[UInt8]?, any Error>).self) { group in
            var next = 0
            func start() {
                let index = next
                next += 1
                group.addTask {
                    do { return (index, .success(try await self.objectBytes(at: paths[index]))) } catch { return (index, .failure(error)) }
                }
            }
            while next < min(16, paths.count) { start() }
            while let done = await group.next() {
                results[done.0] = done.1
                if next < paths.count { start() }
            }
        }
        return results
    }
}

/// ListObjectsV2 page by page (S3 lists in UTF-8 byte order, as the merge needs).
private actor S3Listing: StoreListing {
    let store: S3EscrowStore
    let product: String?
    private var continuation: String?
    private var ended = false

    init(store: S3EscrowStore, product: String?) {
        self.store = store
        self.product = product
    }

    func next() async throws -> [String] {
        while !ended {
            let page = try await store.listObjectNames(under: product, continuation: continuation)
            continuation = page.continuation
            ended = page.continuation == nil
            if !page.names.isEmpty { return page.names }
        }
        return []
    }
}
