import COpenSSL

/// SHA-256 through OpenSSL for callers outside DeviceKeys that must not link swift-crypto (the
/// Simulator stamps firmware modules with it, particle-firmware-format.md §1.6).
public enum OpenSSLDigest {
    public static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        OpenSSLRuntime.prepare()
        var md = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        _ = bytes.withUnsafeBytes { EVP_Digest($0.baseAddress, $0.count, &md, &length, EVP_sha256(), nil) }
        return Array(md.prefix(Int(length)))
    }
}
