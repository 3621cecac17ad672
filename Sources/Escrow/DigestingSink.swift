import Age
import DeviceKeys
import HexEncoding

/// Passes bytes on to another sink and computes their SHA-256 and length on the way, so a
/// streamed escrow object's digest is known without reading it back.
public struct DigestingSink<Inner: AgeByteSink>: AgeByteSink {
    public var inner: Inner
    public private(set) var byteCount = 0
    private var hasher = SHA256Digest()

    public init(_ inner: Inner) { self.inner = inner }

    public mutating func write(_ bytes: UnsafeRawBufferPointer) throws {
        try inner.write(bytes)
        hasher.update(bytes)
        byteCount += bytes.count
    }

    /// Lowercase hex SHA-256 of everything written so far.
    public var sha256: String { Hex.encode(hasher.finalize()) }
}
