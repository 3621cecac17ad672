import FailurePolicy
import Foundation
import Age
import DeviceKeys
import HexEncoding

/// Where a backup lives in a store: `<product>/<device-id>/<spki-sha256>.age` (design.md,
/// "Escrow format"). One object per key a device ever had, so a re-keyed device never
/// overwrites the backup of its earlier key. A custody rotation re-encrypts a backup as a new
/// generation beside it (`<spki-sha256>.g2.age`, …): the store is write-once, so the first stays.
public struct EscrowObjectKey: Hashable, Sendable, CustomStringConvertible {
    public let product: String
    public let deviceID: String
    public let publicKeySHA256: String
    /// 1 for `<spki-sha256>.age`; N > 1 for `<spki-sha256>.gN.age`. A later generation is written
    /// either by a custody rotation (the backup re-encrypted to a new epoch, 0012) or beside an object
    /// at the key's path that no record names and the writer cannot take over (a killed write, a
    /// backup put there by hand): the write goes on under the next generation, and the blocked object
    /// stays for the audit to report (`keyline audit --check-store` lists objects no record names).
    public let generation: Int

    /// Generations a write tries before giving up (each one occupied by an unrecorded object).
    public static let generations = 1...16

    public init(product: String, deviceID: String, publicKeySHA256: String, generation: Int = 1) throws(EscrowStoreError) {
        guard (1...9_999).contains(generation) else { throw .invalidKey("generation \(generation) is not 1-9999") }
        guard Self.isPathSegment(product) else { throw .invalidKey("product \"\(product)\" is not 1-64 letters, digits, '.', '-' or '_'") }
        guard Self.isDeviceID(deviceID) else {
            throw .invalidKey("device ID \"\(deviceID)\" is not 24 lowercase hex digits")
        }
        guard Self.isSHA256Hex(publicKeySHA256) else {
            throw .invalidKey("public key SHA-256 \"\(publicKeySHA256)\" is not 64 lowercase hex digits")
        }
        self.product = product
        self.deviceID = deviceID
        self.publicKeySHA256 = publicKeySHA256
        self.generation = generation
    }

    /// The key a registry row records: `recordedPath` must be this device's and this key's object
    /// in some generation.
    public init(recordedPath: String, product: String, deviceID: String, publicKeySHA256: String) throws(EscrowStoreError) {
        guard let key = EscrowObjectKey(path: recordedPath), key.product == product, key.deviceID == deviceID,
              key.publicKeySHA256 == publicKeySHA256 else {
            throw .invalidKey("\"\(recordedPath)\" is not an object key of \(product)/\(deviceID)/\(publicKeySHA256)")
        }
        self = key
    }

    /// The same key in generation `generation`.
    public func at(generation: Int) throws(EscrowStoreError) -> EscrowObjectKey {
        try EscrowObjectKey(product: product, deviceID: deviceID, publicKeySHA256: publicKeySHA256, generation: generation)
    }

    /// The object's path relative to the store root.
    public var path: String { "\(product)/\(deviceID)/\(fileName)" }

    /// The object's name in its device's folder.
    public var fileName: String { generation == 1 ? "\(publicKeySHA256).age" : "\(publicKeySHA256).g\(generation).age" }

    /// The key a recorded object key names (`path` read back), or nil when it is not one.
    public init?(path: String) {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 3, parts[2].hasSuffix(".age") else { return nil }
        let stem = parts[2].dropLast(4).split(separator: ".", omittingEmptySubsequences: false)
        var generation = 1
        if stem.count == 2 {
            guard stem[1].first == "g", let number = Int(stem[1].dropFirst()), number >= 2,
                  String(number) == String(stem[1].dropFirst()) else { return nil }
            generation = number
        } else if stem.count != 1 {
            return nil
        }
        guard let key = try? EscrowObjectKey(product: parts[0], deviceID: parts[1], publicKeySHA256: String(stem[0]),
                                             generation: generation) else { return nil }
        self = key
    }
    public var description: String { path }

    /// A Particle device ID as keyline stores it: 12 bytes written as 24 lowercase hex digits.
    /// The one definition; backup documents use it too.
    public static func isDeviceID(_ text: String) -> Bool { isLowerHex(text, digits: 24) }

    /// A SHA-256 as the registry records it: 64 lowercase hex digits (ASCII only).
    public static func isSHA256Hex(_ text: String) -> Bool { isLowerHex(text, digits: 64) }

    static func isLowerHex(_ text: String, digits: Int) -> Bool { Hex.isLowercase(text, digits: digits) }

    /// A name safe as one path component anywhere: no separators, no "." or "..", no hidden files.
    public static func isPathSegment(_ text: String) -> Bool {
        (1...64).contains(text.utf8.count) && text.utf8.first != UInt8(ascii: ".")
            && text.utf8.allSatisfy { (48...57).contains($0) || (65...90).contains($0) || (97...122).contains($0) || $0 == 45 || $0 == 46 || $0 == 95 }
    }
}

/// Durable, write-once storage for encrypted backups. Stores only ever see ciphertext.
public protocol EscrowStore: Sendable {
    /// Stores `ciphertext` at `key` durably and returns its SHA-256 (lowercase hex), the value the
    /// registry records. Writing bytes identical to an existing object succeeds (a resumed job
    /// repeats the write); different bytes at an existing key throw `.objectExists`, and the
    /// stored object is never changed.
    func put(_ ciphertext: [UInt8], at key: EscrowObjectKey) async throws -> String

    /// Reads the object at `key` and checks it against `expectedSHA256` (lowercase hex).
    func get(_ key: EscrowObjectKey, expectedSHA256: String) async throws -> [UInt8]

    /// Whether an object exists at `key`.
    func contains(_ key: EscrowObjectKey) async throws -> Bool

    /// Takes over an object an earlier, interrupted run wrote (age output is random, so the
    /// redone encryption can never match it; the registry's write-ahead intent holds its hash).
    /// Returns true when an object with exactly `expectedSHA256` is at `key`, after making it
    /// durable as `put` would have (it then counts as written); false when there is no object;
    /// throws `.checksumMismatch` when one with other bytes is there (someone must look).
    func adopt(_ key: EscrowObjectKey, expectedSHA256: String) async throws -> Bool

    /// Removes the temporary files of puts that were killed before publishing, if older than
    /// `olderThan` (a live put's file is younger); never touches an object. Returns how many.
    func sweepStaleTemporaryFiles(olderThan: Duration) async throws -> Int

    /// Where the store is, as the registry records it (`file:///abs/path` for a directory,
    /// `s3://bucket/prefix` for an object store).
    var storeURI: String { get }

    // MARK: Describing and auditing itself (each store knows its own layout and concurrency)

    /// The store for people: its folder, or its s3:// URI.
    var displayName: String { get }

    /// Where an object lives, for people: a file path, or `s3://bucket/key`.
    func location(of key: EscrowObjectKey) -> String

    /// The SHA-256 (lowercase hex) of each object as it is now (nil: no such object), in the
    /// order of `objectKeys` (paths relative to the store, as the registry records them). The
    /// bytes are read and hashed, with as many reads at once as suits the store.
    func sha256s(ofObjectsAt objectKeys: [String]) async -> [Result<String?, any Error>]

    /// The bytes of each object (nil: no such object), in the order of `objectKeys`.
    func contents(ofObjectsAt objectKeys: [String]) async -> [Result<[UInt8]?, any Error>]

    /// Every object key in the store, under `product` (a top-level folder) or all, a page at a
    /// time and in no particular order; memory stays flat however large the store. Files that
    /// do not look like objects are listed too (an audit reports them as orphans); the store's
    /// own bookkeeping (temporary files, markers, probes) is not.
    func objectPages(under product: String?) -> AsyncThrowingStream<[String], any Error>
}

/// Why a store operation failed. Carries keys, paths and hashes, never object contents.
public enum EscrowStoreError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalidKey(String)
    /// The store location (path or URI) cannot be used as given.
    case invalidStore(String)
    case objectExists(EscrowObjectKey, storedSHA256: String, newSHA256: String)
    case notFound(EscrowObjectKey)
    case checksumMismatch(EscrowObjectKey, expected: String, actual: String)
    case io(operation: String, path: String, errno: Int32)
    /// A store folder that would let objects escape or be replaced (a symlink, a group/world-
    /// writable folder), or a file keyline was asked to write inside a store: a person must fix it.
    case unsafeStore(path: String, problem: String)

    public var description: String {
        switch self {
        case .invalidKey(let reason):
            "invalid escrow object key: \(reason)"
        case .invalidStore(let reason):
            "invalid escrow store: \(reason)"
        case .objectExists(let key, let stored, let new):
            "escrow object \(key) already exists with different contents (stored SHA-256 \(stored), new \(new)); objects are written once and never replaced. Each encryption differs, so this key was most likely escrowed before (an interrupted run): keep the stored object if the registry records its SHA-256, otherwise investigate the store"
        case .notFound(let key):
            "escrow object \(key) does not exist in the store; the backup is missing"
        case .checksumMismatch(let key, let expected, let actual):
            "escrow object \(key) has SHA-256 \(actual), not the recorded \(expected): it was modified or damaged; do not use it"
        case .io(let operation, let path, let code):
            "escrow store: \(operation) \(path) failed: \(String(cString: strerror(code))); check the store's disk and permissions"
        case .unsafeStore(let path, let problem):
            "unsafe escrow store: \(path) \(problem)"
        }
    }
}

extension EscrowStoreError: ClassifiedError {
    /// Nothing here clears up by retrying. A bad key is the caller's input. The store itself
    /// failing (disk full, permissions, I/O) or unsafe (a symlinked or world-writable folder) needs a person, and work waits for it. A conflicting,
    /// missing or damaged object concerns one device's backup: that device fails with the
    /// message (someone must look at that object) while the others go on.
    public var failureClass: FailureClass {
        switch self {
        case .invalidKey, .invalidStore: .badInput
        case .objectExists, .notFound, .checksumMismatch: .badDevice
        case .io, .unsafeStore: .needsOperator
        }
    }
}

extension Age {
    /// Lowercase hex SHA-256 of an escrow object, as the registry records it.
    public static func sha256(_ bytes: [UInt8]) -> String { SHA256Digest.hex(bytes) }
}
