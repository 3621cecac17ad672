import COpenSSL
import HexEncoding

/// SHA-256, the one path keyline hashes bytes through (OpenSSL's EVP): public-key fingerprints,
/// key-slot and firmware digests, escrow objects' ciphertext as the registry records it, S3
/// payload hashes. HMAC and HKDF inside age and SigV4 are those formats' own primitives.
///
/// A value: a copy hashes on from where the original was (copy on write), as swift-crypto's
/// `SHA256` did for the streams that embed one.
public struct SHA256Digest {
    /// 32 bytes.
    public static let byteCount = 32

    private var context: DigestContext

    public init() {
        context = DigestContext()
    }

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        if !isKnownUniquelyReferenced(&context) { context = context.copy() }
        context.check(EVP_DigestUpdate(context.pointer, base, bytes.count), "EVP_DigestUpdate")
    }

    public mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// The digest of everything passed to `update` so far; hashing may go on after it.
    public func finalize() -> [UInt8] {
        // A copy is finalized, so a stream's running digest can be read midway.
        let copy = context.copy()
        var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        copy.check(EVP_DigestFinal_ex(copy.pointer, &digest, &length), "EVP_DigestFinal_ex")
        return Array(digest.prefix(Int(length)))
    }

    /// The SHA-256 of `bytes`.
    public static func hash(_ bytes: [UInt8]) -> [UInt8] {
        OpenSSLRuntime.prepare()
        var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let result = bytes.withUnsafeBytes { EVP_Digest($0.baseAddress, $0.count, &digest, &length, EVP_sha256(), nil) }
        precondition(result == 1, "OpenSSL EVP_Digest failed for SHA-256")
        return Array(digest.prefix(Int(length)))
    }

    /// The SHA-256 of `bytes` as lowercase hex, as the registry records fingerprints and digests.
    public static func hex(_ bytes: [UInt8]) -> String { Hex.encode(hash(bytes)) }
}

/// One EVP_MD_CTX, freed with its owner.
private final class DigestContext {
    let pointer: OpaquePointer

    init() {
        OpenSSLRuntime.prepare()
        // EVP_MD_CTX_new fails only when memory is exhausted, where every Swift allocation traps too.
        pointer = EVP_MD_CTX_new()!
        check(EVP_DigestInit_ex(pointer, EVP_sha256(), nil), "EVP_DigestInit_ex")
    }

    private init(copying other: DigestContext) {
        pointer = EVP_MD_CTX_new()!
        check(EVP_MD_CTX_copy_ex(pointer, other.pointer), "EVP_MD_CTX_copy_ex")
    }

    func copy() -> DigestContext { DigestContext(copying: self) }

    /// SHA-256 over bytes in memory fails only when OpenSSL itself is broken (no provider, no
    /// memory): no digest is better than a wrong one recorded in the registry.
    func check(_ result: Int32, _ call: String) {
        precondition(result == 1, "OpenSSL \(call) failed for SHA-256")
    }

    deinit { EVP_MD_CTX_free(pointer) }
}
