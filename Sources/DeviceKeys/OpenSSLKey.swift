import COpenSSL

/// An owned `EVP_PKEY`. Internal: the public types hold plain bytes, so nothing outside this file
/// manages OpenSSL memory. OpenSSL's error queue is thread-local; every entry point clears it first,
/// through `OpenSSLRuntime.enter()`.
final class OpenSSLKey {
    let pkey: OpaquePointer

    init(taking pkey: OpaquePointer) { self.pkey = pkey }
    deinit { EVP_PKEY_free(pkey) }

    // MARK: generation

    /// RSA-1024, e = 65537 (OpenSSL's default exponent), as Device OS `gen_rsa_key()` makes
    /// (device-os-keys.md §1.3); or a P-256 key as `gen_ec_key()` makes.
    static func generate(_ algorithm: KeyAlgorithm) throws(DeviceKeyError) -> OpenSSLKey {
        OpenSSLRuntime.enter()
        let name = algorithm == .rsa ? "RSA" : "EC"
        guard let ctx = EVP_PKEY_CTX_new_from_name(nil, name, nil) else {
            throw .generationFailed(algorithm: algorithm, reason: OpenSSLKey.lastError())
        }
        defer { EVP_PKEY_CTX_free(ctx) }
        guard EVP_PKEY_keygen_init(ctx) == 1 else { throw .generationFailed(algorithm: algorithm, reason: lastError()) }
        let configured = switch algorithm {
        case .rsa: EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, 1024)
        case .ec: EVP_PKEY_CTX_set_group_name(ctx, "prime256v1")
        }
        guard configured == 1 else { throw .generationFailed(algorithm: algorithm, reason: lastError()) }
        var pkey: OpaquePointer?
        guard EVP_PKEY_generate(ctx, &pkey) == 1, let pkey else {
            throw .generationFailed(algorithm: algorithm, reason: lastError())
        }
        return OpenSSLKey(taking: pkey)
    }

    // MARK: decoding (each consumes exactly `der`)

    static func decodePrivate(_ der: [UInt8], as encoding: KeyEncoding) -> OpenSSLKey? {
        der.withUnsafeBytes { decodePrivate($0, as: encoding) }
    }

    static func decodePrivate(_ der: UnsafeRawBufferPointer, as encoding: KeyEncoding) -> OpenSSLKey? {
        OpenSSLRuntime.enter()
        return der.withMemoryRebound(to: UInt8.self) { buffer -> OpenSSLKey? in
            var cursor: UnsafePointer<UInt8>? = buffer.baseAddress
            let pkey: OpaquePointer? = switch encoding {
            case .pkcs1: d2i_PrivateKey(EVP_PKEY_RSA, nil, &cursor, buffer.count)
            case .sec1: d2i_PrivateKey(EVP_PKEY_EC, nil, &cursor, buffer.count)
            case .pkcs8: d2i_AutoPrivateKey(nil, &cursor, buffer.count)
            case .spki, .pkcs1Public: nil
            }
            guard let pkey else { return nil }
            let key = OpenSSLKey(taking: pkey)
            return cursor == buffer.baseAddress.map({ $0 + buffer.count }) ? key : nil
        }
    }

    static func decodePublic(_ der: [UInt8], as encoding: KeyEncoding) -> OpenSSLKey? {
        OpenSSLRuntime.enter()
        return der.withUnsafeBufferPointer { buffer -> OpenSSLKey? in
            var cursor: UnsafePointer<UInt8>? = buffer.baseAddress
            let pkey: OpaquePointer? = switch encoding {
            case .spki: d2i_PUBKEY(nil, &cursor, buffer.count)
            case .pkcs1Public: d2i_PublicKey(EVP_PKEY_RSA, nil, &cursor, buffer.count)
            default: nil
            }
            guard let pkey else { return nil }
            let key = OpenSSLKey(taking: pkey)
            return cursor == buffer.baseAddress.map({ $0 + buffer.count }) ? key : nil
        }
    }

    // MARK: properties

    /// Whether the private and public halves belong together. d2i does not check this: a SEC1 key
    /// whose private scalar is damaged still decodes, with the stored (now wrong) public point.
    /// For RSA this checks n = p·q and the CRT values, without slow primality tests.
    var isPairwiseConsistent: Bool {
        guard let ctx = EVP_PKEY_CTX_new_from_pkey(nil, pkey, nil) else { return false }
        defer { EVP_PKEY_CTX_free(ctx) }
        let result = EVP_PKEY_pairwise_check(ctx)
        ERR_clear_error()
        return result == 1
    }

    var baseID: Int32 { EVP_PKEY_get_base_id(pkey) }
    var bits: Int { Int(EVP_PKEY_get_bits(pkey)) }

    var groupName: String? {
        var buffer = [CChar](repeating: 0, count: 64)
        var length = 0
        guard EVP_PKEY_get_group_name(pkey, &buffer, buffer.count, &length) == 1 else { return nil }
        return String(decoding: buffer.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    var rsaPublicExponent: UInt64? {
        var bn: OpaquePointer?
        guard EVP_PKEY_get_bn_param(pkey, "e", &bn) == 1, let bn else { return nil }
        defer { BN_free(bn) }
        guard BN_num_bits(bn) <= 64 else { return nil }
        return UInt64(BN_get_word(bn))
    }

    // MARK: encoding

    /// `i2d_PrivateKey` writes the type-specific structure: PKCS#1 RSAPrivateKey for RSA, SEC1
    /// ECPrivateKey (with the named curve and public point) for EC — the formats the DCT holds.
    func typeSpecificPrivateDER() -> [UInt8]? {
        Self.encode { i2d_PrivateKey(pkey, $0) }
    }

    /// SubjectPublicKeyInfo DER (RFC 5280 §4.1), what the cloud registers and we fingerprint.
    func spkiDER() -> [UInt8]? {
        Self.encode { i2d_PUBKEY(pkey, $0) }
    }

    /// `BEGIN RSA PRIVATE KEY` / `BEGIN EC PRIVATE KEY`: PEM of the same bytes as the DER file.
    func traditionalPrivatePEM() -> String? {
        Self.pem { PEM_write_bio_PrivateKey_traditional($0, pkey, nil, nil, 0, nil, nil) }
    }

    func publicPEM() -> String? {
        Self.pem { PEM_write_bio_PUBKEY($0, pkey) }
    }

    private static func encode(_ i2d: (UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>?) -> Int32) -> [UInt8]? {
        let length = i2d(nil)
        guard length > 0 else { return nil }
        var out = [UInt8](repeating: 0, count: Int(length))
        let written = out.withUnsafeMutableBufferPointer { buffer -> Int32 in
            var cursor: UnsafeMutablePointer<UInt8>? = buffer.baseAddress
            return i2d(&cursor)
        }
        return written == length ? out : nil
    }

    private static func pem(_ write: (OpaquePointer) -> Int32) -> String? {
        guard let bio = BIO_new(BIO_s_mem()) else { return nil }
        defer { BIO_free(bio) }
        guard write(bio) == 1 else { return nil }
        let pending = Int(BIO_ctrl_pending(bio))
        var text = [UInt8](repeating: 0, count: pending)
        // The PEM of a private key: the staging copy is zeroed, whatever happens to the result.
        defer { text.withUnsafeMutableBytes { OPENSSL_cleanse($0.baseAddress, $0.count) } }
        guard BIO_read(bio, &text, Int32(pending)) == Int32(pending) else { return nil }
        return String(decoding: text, as: UTF8.self)
    }

    /// OpenSSL's description of the last failure. These strings name the failing routine and reason;
    /// they never contain key material.
    static func lastError() -> String {
        let code = ERR_peek_last_error()
        guard code != 0 else { return "unknown OpenSSL error" }
        var buffer = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &buffer, buffer.count)
        ERR_clear_error()
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// PEM armor, read by OpenSSL (`PEM_read_bio`): each block's label and DER body.
enum PEMArmor {
    struct Block {
        var label: String
        var encrypted: Bool
        var der: [UInt8]
    }

    static func looksLikePEM(_ bytes: [UInt8]) -> Bool {
        let marker = Array("-----BEGIN ".utf8)
        return bytes.count >= marker.count && (0...(bytes.count - marker.count)).contains { i in
            bytes[i..<(i + marker.count)].elementsEqual(marker)
        }
    }

    /// nil when no block could be read (bad base64, missing END line, …).
    static func blocks(_ bytes: [UInt8]) -> [Block]? {
        OpenSSLRuntime.enter()
        guard let bio = bytes.withUnsafeBytes({ BIO_new_mem_buf($0.baseAddress, Int32($0.count)) }) else { return nil }
        defer { BIO_free(bio) }
        var blocks: [Block] = []
        while true {
            var name: UnsafeMutablePointer<CChar>?
            var header: UnsafeMutablePointer<CChar>?
            var data: UnsafeMutablePointer<UInt8>?
            var length = 0
            guard PEM_read_bio(bio, &name, &header, &data, &length) == 1 else { break }
            defer {
                CRYPTO_free(name, #fileID, #line)
                CRYPTO_free(header, #fileID, #line)
                // The body is a private key's DER when the block is one: overwritten before it
                // goes back to the heap (OPENSSL_clear_free), like every other copy of key bytes.
                CRYPTO_clear_free(data, length, #fileID, #line)
            }
            let label = name.map { String(cString: $0) } ?? ""
            let headers = header.map { String(cString: $0) } ?? ""
            let der = data.map { Array(UnsafeBufferPointer(start: $0, count: length)) } ?? []
            blocks.append(Block(label: label, encrypted: headers.contains("ENCRYPTED") || label.hasPrefix("ENCRYPTED"), der: der))
        }
        ERR_clear_error()
        return blocks.isEmpty ? nil : blocks
    }
}

let EVP_PKEY_RSA_ID: Int32 = EVP_PKEY_RSA
let EVP_PKEY_RSA_PSS_ID: Int32 = EVP_PKEY_RSA_PSS
let EVP_PKEY_EC_ID: Int32 = EVP_PKEY_EC

extension OpenSSLKey {
    var typeName: String {
        EVP_PKEY_get0_type_name(pkey).map { String(cString: $0) } ?? "unknown (\(baseID))"
    }
}
