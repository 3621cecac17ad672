import COpenSSL
import Synchronization

/// Private key bytes in one heap buffer that is overwritten (OPENSSL_cleanse) when the last reference
/// goes away. A Swift array copies freely and is freed without being cleared, so a key kept in one
/// lingers in freed memory a core dump or a later allocation can show; this buffer is never copied
/// by the language, only read through `withUnsafeBytes`.
///
/// Immutable after `init`, so sharing it between threads is safe.
public final class SecretBytes: @unchecked Sendable {
    private let storage: UnsafeMutableRawBufferPointer

    /// Moves `bytes` in: they are copied into the buffer and the array is cleared (it must be the
    /// only reference to its storage, which a `var` just made from OpenSSL or a decoder is).
    public init(clearing bytes: inout [UInt8]) {
        storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 1)
        count = bytes.count
        bytes.withUnsafeBytes { source in
            if let base = source.baseAddress { storage.baseAddress!.copyMemory(from: base, byteCount: source.count) }
        }
        Self.clear(&bytes)
    }

    public let count: Int

    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(rebasing: storage[0..<count]))
    }

    /// A copy the caller owns and must clear with `SecretBytes.clear` when done (a file write, a test).
    public func copy() -> [UInt8] {
        withUnsafeBytes { Array($0) }
    }

    /// Whether the secret equals `other`, in time independent of where they differ.
    public func equals(_ other: some Collection<UInt8>) -> Bool {
        guard other.count == count else { return false }
        return withUnsafeBytes { mine in
            var difference: UInt8 = 0
            for (index, byte) in other.enumerated() { difference |= mine[index] ^ byte }
            return difference == 0
        }
    }

    deinit {
        OPENSSL_cleanse(storage.baseAddress, storage.count)
        Self.releaseObserver.withLock { $0?(UnsafeRawBufferPointer(storage)) }
        storage.deallocate()
    }

    /// Tests see each buffer as it is about to be freed (after clearing), to prove it was cleared.
    static let releaseObserver = Mutex<(@Sendable (UnsafeRawBufferPointer) -> Void)?>(nil)

    /// Overwrites an array's bytes in place (it keeps its length). Use it on every plaintext copy of
    /// a key or backup document the moment it is no longer needed.
    public static func clear(_ bytes: inout [UInt8]) {
        bytes.withUnsafeMutableBytes { clear($0) }
    }

    /// Overwrites bytes in place (a `Data`'s or another buffer's storage).
    public static func clear(_ bytes: UnsafeMutableRawBufferPointer) {
        OPENSSL_cleanse(bytes.baseAddress, bytes.count)
    }
}
