import COpenSSL

/// Cheap checks of an RSA private key, run before OpenSSL's pairwise check. That check
/// (`RSA_check_key`) runs primality tests on p and q whose cost grows with the cube of their size:
/// a crafted 32 KB key with large random p and q took 21 s to refuse (issue 12). So the sizes are
/// bounded first, then the arithmetic that ties the parts together is checked with a handful of
/// multiplications, and only a key of device size reaches the primality tests.
enum RSAKeyBounds {
    /// The largest modulus keyline reads: devices use RSA-1024, servers RSA-2048; larger keys are
    /// still described (`keys inspect`) so the operator learns why they do not fit.
    static let largestModulusBits = 4096
    /// Keys up to this size (every device key) get OpenSSL's full check including primality; larger
    /// ones fit no slot and are refused for any device use, so their arithmetic check suffices
    /// (the primality tests alone take 0.06 s at 2048 bits and 0.6 s at 4096).
    static let primalityCheckedModulusBits = 1024

    enum Verdict: Equatable {
        case consistent
        case tooLarge(bits: Int)
        case multiPrime
        case inconsistent
    }

    /// Whether `key`'s RSA parts are bounded and belong together: n = p·q, e·d ≡ 1 mod p−1 and
    /// q−1, dP = d mod p−1, dQ = d mod q−1, qInv·q ≡ 1 mod p.
    static func check(_ key: OpenSSLKey) -> Verdict {
        defer { ERR_clear_error() }
        guard let n = key.bignum("n") else { return .inconsistent }
        defer { BN_free(n) }
        let modulusBits = Int(BN_num_bits(n))
        guard modulusBits <= largestModulusBits else { return .tooLarge(bits: modulusBits) }
        // A third factor makes a multi-prime key (RFC 8017 A.1.2 version 1), which no device uses.
        if let third = key.bignum("rsa-factor3") { BN_free(third); return .multiPrime }
        let names = ["e", "d", "rsa-factor1", "rsa-factor2", "rsa-exponent1", "rsa-exponent2", "rsa-coefficient1"]
        let parts = names.map { key.bignum($0) }
        defer { for part in parts { if let part { BN_free(part) } } }
        guard let e = parts[0], let d = parts[1], let p = parts[2], let q = parts[3],
              let dP = parts[4], let dQ = parts[5], let qInv = parts[6] else { return .inconsistent }
        // Bounds first, so the arithmetic below works on numbers no larger than n.
        let pBits = Int(BN_num_bits(p)), qBits = Int(BN_num_bits(q))
        for part in [e, d, dP, dQ, qInv] where Int(BN_num_bits(part)) > modulusBits { return .inconsistent }
        guard pBits > 1, qBits > 1, pBits + qBits <= modulusBits + 1 else { return .inconsistent }

        guard let ctx = BN_CTX_new() else { return .inconsistent }
        defer { BN_CTX_free(ctx) }
        let scratch = (0..<4).map { _ in BN_new() }
        defer { for value in scratch { BN_free(value) } }
        guard let product = scratch[0], let pMinus1 = scratch[1], let qMinus1 = scratch[2], let remainder = scratch[3] else {
            return .inconsistent
        }
        guard BN_mul(product, p, q, ctx) == 1, BN_cmp(product, n) == 0 else { return .inconsistent }
        guard BN_copy(pMinus1, p) != nil, BN_sub_word(pMinus1, 1) == 1,
              BN_copy(qMinus1, q) != nil, BN_sub_word(qMinus1, 1) == 1 else { return .inconsistent }
        // e·d ≡ 1 modulo p−1 and q−1 (equivalently modulo their lcm, what RSA needs).
        for modulus in [pMinus1, qMinus1] {
            guard BN_mod_mul(remainder, e, d, modulus, ctx) == 1, BN_is_one(remainder) == 1 else { return .inconsistent }
        }
        // The CRT values the device's mbedTLS uses to sign.
        for (exponent, modulus) in [(dP, pMinus1), (dQ, qMinus1)] {
            guard BN_div(nil, remainder, d, modulus, ctx) == 1, BN_cmp(remainder, exponent) == 0 else { return .inconsistent }
        }
        guard BN_mod_mul(remainder, qInv, q, p, ctx) == 1, BN_is_one(remainder) == 1 else { return .inconsistent }
        return .consistent
    }
}

extension OpenSSLKey {
    /// A copy of one of the key's big-number parameters (OSSL_PKEY_PARAM_RSA_*), or nil; the
    /// caller frees it.
    func bignum(_ name: String) -> OpaquePointer? {
        var value: OpaquePointer?
        guard EVP_PKEY_get_bn_param(pkey, name, &value) == 1 else { return nil }
        return value
    }
}
