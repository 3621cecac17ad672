import Foundation

/// Crafted key files of the kind issue 12 found costly: a PKCS#1 RSAPrivateKey whose integers are
/// large random numbers. OpenSSL's key check tests p and q for primality; numbers with no small
/// factor survive its trial division, so each costs a modular exponentiation of its own size
/// (21 s at 32 KB before keyline bounded them). Shared by the tests and keyline-bench.
public enum HostileKeys {
    /// A DER RSAPrivateKey (RFC 8017 A.1.2, version 0) with an `modulusBytes`-byte random n and
    /// `primeBytes`-byte random p and q (d, dP, dQ, qInv sized alike); n is not p·q. With
    /// `withoutSmallFactors`, p and q have no prime factor below 20,000 (slower to make, and what
    /// makes OpenSSL's primality test expensive).
    public static func craftedRSA(modulusBytes: Int, primeBytes: Int, withoutSmallFactors: Bool = false) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        func random(_ count: Int, odd: Bool) -> [UInt8] {
            var bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
            bytes[0] = bytes[0] | 0x80  // full length
            if odd { bytes[count - 1] |= 1 }
            return bytes
        }
        func prime() -> [UInt8] {
            while true {
                let candidate = random(primeBytes, odd: true)
                if !withoutSmallFactors || !hasSmallFactor(candidate) { return candidate }
            }
        }
        let integers = [[0], random(modulusBytes, odd: true), [0x01, 0x00, 0x01], random(modulusBytes, odd: false),
                        prime(), prime(), random(primeBytes, odd: false), random(primeBytes, odd: false), random(primeBytes, odd: false)]
        return DERWriter.sequence(integers.map(DERWriter.integer))
    }

    static let smallPrimes: [UInt32] = {
        let limit = 20_000
        var sieve = [Bool](repeating: true, count: limit)
        var primes: [UInt32] = []
        for n in 2..<limit where sieve[n] {
            primes.append(UInt32(n))
            for multiple in stride(from: n * n, to: limit, by: n) { sieve[multiple] = false }
        }
        return primes
    }()

    static func hasSmallFactor(_ bigEndian: [UInt8]) -> Bool {
        smallPrimes.contains { prime in
            var remainder: UInt64 = 0
            for byte in bigEndian { remainder = (remainder << 8 | UInt64(byte)) % UInt64(prime) }
            return remainder == 0
        }
    }
}

/// Minimal DER writing (X.690) for crafted inputs.
public enum DERWriter {
    public static func length(_ count: Int) -> [UInt8] {
        if count < 0x80 { return [UInt8(count)] }
        var bytes: [UInt8] = []
        var rest = count
        while rest > 0 { bytes.insert(UInt8(rest & 0xFF), at: 0); rest >>= 8 }
        return [0x80 | UInt8(bytes.count)] + bytes
    }

    /// A non-negative INTEGER from big-endian magnitude bytes.
    public static func integer(_ magnitude: [UInt8]) -> [UInt8] {
        let content = (magnitude.first ?? 0) & 0x80 != 0 ? [0] + magnitude : magnitude
        return [0x02] + length(content.count) + content
    }

    public static func sequence(_ elements: [[UInt8]]) -> [UInt8] {
        let content = elements.flatMap { $0 }
        return [0x30] + length(content.count) + content
    }
}
