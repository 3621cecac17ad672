/// Arithmetic in GF(2^8) with the AES reduction polynomial x^8 + x^4 + x^3 + x + 1 (0x11B; FIPS
/// 197 §4.2). Multiplication is a fixed eight-step shift-and-add without table look-ups or
/// data-dependent branches, so its timing does not depend on the secret bytes it multiplies.
enum GF256 {
    static func multiply(_ a: UInt8, _ b: UInt8) -> UInt8 {
        var a = a, b = b, product: UInt8 = 0
        for _ in 0..<8 {
            product ^= a & (0 &- (b & 1))           // add a when b's low bit is set
            let carry = 0 &- (a >> 7)                // 0xFF when a's high bit is set
            a = (a << 1) ^ (0x1B & carry)            // times x, reduced
            b >>= 1
        }
        return product
    }

    /// a^254 = a^-1 for a ≠ 0 (the multiplicative group has order 255); 0 maps to 0.
    static func inverse(_ a: UInt8) -> UInt8 {
        var result: UInt8 = 1, base = a, exponent = 254
        while exponent > 0 {
            if exponent & 1 == 1 { result = multiply(result, base) }
            base = multiply(base, base)
            exponent >>= 1
        }
        return result
    }

    static func divide(_ a: UInt8, _ b: UInt8) -> UInt8 {
        precondition(b != 0, "division by zero in GF(2^8)")
        return multiply(a, inverse(b))
    }

    /// The polynomial with `coefficients` (constant term first) at `x`, by Horner's rule.
    static func evaluate(_ coefficients: [UInt8], at x: UInt8) -> UInt8 {
        var result: UInt8 = 0
        for coefficient in coefficients.reversed() { result = multiply(result, x) ^ coefficient }
        return result
    }
}
