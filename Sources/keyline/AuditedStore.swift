import Dispatch
import Escrow
import EscrowS3
import Foundation

/// The escrow store an audit checks: a directory (files read and hashed on Dispatch threads, all
/// cores at once) or an S3 store (objects read over HTTP, 16 requests at a time).
enum AuditedStore: Sendable {
    case directory(DirectoryEscrowStore)
    case s3(S3EscrowStore)

    /// The store at `location` (a directory, file:///path or s3://bucket/prefix), as `EscrowStores` opens it.
    static func open(_ location: String) throws -> AuditedStore {
        switch try EscrowStores.open(location) {
        case let s3 as S3EscrowStore: return .s3(s3)
        case let directory as DirectoryEscrowStore: return .directory(DirectoryEscrowStore(root: directory.root.standardizedFileURL))
        default: throw EscrowStoreError.invalidStore("\(location): keyline audit reads directory and s3:// stores")
        }
    }

    var storeURI: String {
        switch self {
        case .directory(let store): store.storeURI
        case .s3(let store): store.storeURI
        }
    }

    /// For people: the folder, or the s3:// URI.
    var name: String {
        switch self {
        case .directory(let store): store.root.path
        case .s3(let store): store.storeURI
        }
    }

    static let s3Concurrency = 16

    /// The SHA-256 of each object (nil: no such object), in the order of `objectKeys`.
    func sha256s(_ objectKeys: [String]) async -> [Result<String?, any Error>] {
        switch self {
        case .directory(let store):
            return await parallelMap(objectKeys) { key in Result<String?, any Error> { try store.sha256(ofObjectAt: key) } }
        case .s3(let store):
            return await concurrentMap(objectKeys, width: Self.s3Concurrency) { key -> Result<String?, any Error> in
                do { return .success(try await store.sha256(ofObjectAt: key)) } catch { return .failure(error) }
            }
        }
    }

    /// The bytes of each object (nil: no such object), in the order of `objectKeys`.
    func contents(_ objectKeys: [String]) async -> [Result<[UInt8]?, any Error>] {
        switch self {
        case .directory(let store):
            return await parallelMap(objectKeys) { key in Result<[UInt8]?, any Error> { try store.contents(ofObjectAt: key) } }
        case .s3(let store):
            return await concurrentMap(objectKeys, width: Self.s3Concurrency) { key -> Result<[UInt8]?, any Error> in
                do { return .success(try await store.contents(ofObjectAt: key)) } catch { return .failure(error) }
            }
        }
    }

    /// The store's objects a batch at a time (empty at the end), under `product` or all.
    func listing(under product: String?) -> @Sendable () async throws -> [String] {
        switch self {
        case .directory(let store):
            let walk = store.objectWalk(under: product)
            return { try await offPool { try walk.next(2_048) } }
        case .s3(let store):
            let state = ListingState()
            return {
                guard !state.ended else { return [] }
                let page = try await store.listObjects(under: product, continuationToken: state.token)
                state.token = page.next
                state.ended = page.next == nil
                return page.keys
            }
        }
    }
}

/// Where an S3 listing is; used by one caller at a time.
private final class ListingState: @unchecked Sendable {
    var token: String?
    var ended = false
}

/// Blocking file-system work on a Dispatch thread, never on the cooperative pool.
func offPool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global(qos: .userInitiated).async { continuation.resume(with: Result { try work() }) }
    }
}

/// Runs `work` over `items` on Dispatch's worker threads (never Swift's cooperative pool, as the
/// work blocks on files or burns CPU), all cores at once; results in the order of `items`.
func parallelMap<T: Sendable, R: Sendable>(_ items: [T], _ work: @escaping @Sendable (T) -> R) async -> [R] {
    guard !items.isEmpty else { return [] }
    return await withCheckedContinuation { continuation in
        DispatchQueue.global(qos: .userInitiated).async {
            let results = ResultSlots<R>(count: items.count)
            DispatchQueue.concurrentPerform(iterations: items.count) { index in results.set(index, work(items[index])) }
            continuation.resume(returning: results.values())
        }
    }
}

/// Runs async `work` (network requests) over `items`, at most `width` at once; results in order.
func concurrentMap<T: Sendable, R: Sendable>(_ items: [T], width: Int, _ work: @escaping @Sendable (T) async -> R) async -> [R] {
    await withTaskGroup(of: (Int, R).self) { group in
        var results = [R?](repeating: nil, count: items.count)
        var started = 0
        while started < min(width, items.count) {
            let index = started
            group.addTask { (index, await work(items[index])) }
            started += 1
        }
        while let done = await group.next() {
            results[done.0] = done.1
            if started < items.count {
                let index = started
                group.addTask { (index, await work(items[index])) }
                started += 1
            }
        }
        return results.map { $0! }
    }
}

/// One slot per index, each written by one iteration of `concurrentPerform` and read after it
/// returns: a buffer allocated once, so the writers never touch shared array bookkeeping.
private final class ResultSlots<R>: @unchecked Sendable {
    private let slots: UnsafeMutableBufferPointer<R?>
    init(count: Int) {
        slots = .allocate(capacity: count)
        slots.initialize(repeating: nil)
    }
    deinit {
        slots.deinitialize()
        slots.deallocate()
    }
    func set(_ index: Int, _ value: R) { slots[index] = value }
    func values() -> [R] { slots.map { $0! } }
}
