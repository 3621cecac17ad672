import COpenSSL
import HexEncoding

/// SHA-256, the one path keyline hashes bytes through (OpenSSL's EVP): public-key fingerprints,
/// key-slot and firmware digests, escrow objects' ciphertext as the registry records it, S3
/// payload hashes. HMAC and HKDF inside age and SigV4 are those formats' own primitives.
public final class SHA256Digest {
    private let context: OpaquePointer

    /// 32 bytes.
    public static let byteCount = 32

    public init() {
        OpenSSLRuntime.prepare()
        // EVP_MD_CTX_new fails only when out of memory, as does every allocation in Swift.
        context = EVP_MD_CTX_new()!
        EVP_DigestInit_ex(context, EVP_sha256(), nil)
    }

    deinit { EVP_MD_CTX_free(context) }

    public func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        EVP_DigestUpdate(context, base, bytes.count)
    }

    public func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// The digest of everything passed to `update` so far (the hasher can go on).
    public func finalize() -> [UInt8] {
        // A copy is finalized, so reading the digest midway (a stream's running SHA-256) is allowed.
        let copy = EVP_MD_CTX_new()!
        defer { EVP_MD_CTX_free(copy) }
        EVP_MD_CTX_copy_ex(copy, context)
        var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        EVP_DigestFinal_ex(copy, &digest, &length)
        return Array(digest.prefix(Int(length)))
    }

    /// The SHA-256 of `bytes`.
    public static func hash(_ bytes: [UInt8]) -> [UInt8] {
        OpenSSLRuntime.prepare()
        var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        _ = bytes.withUnsafeBytes { EVP_Digest($0.baseAddress, $0.count, &digest, &length, EVP_sha256(), nil) }
        return Array(digest.prefix(Int(length)))
    }

    /// The SHA-256 of `bytes` as lowercase hex, as the registry records fingerprints and digests.
    public static func hex(_ bytes: [UInt8]) -> String { Hex.encode(hash(bytes)) }
}
