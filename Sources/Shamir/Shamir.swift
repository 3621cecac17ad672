import FailurePolicy

/// Shamir's secret sharing over GF(2^8), byte by byte (Shamir, "How to share a secret", CACM 1979;
/// the shape Vault uses for its root key: one random polynomial of degree M-1 per secret byte,
/// its constant term the byte). A share is its x coordinate (1...255) and one evaluation per
/// secret byte. Any M shares give the secret back; fewer give nothing about it.
///
/// The scheme has no integrity of its own: combining a wrong or altered share silently yields a
/// wrong secret. Callers check the result against a commitment (keyline: the epoch's recipient,
/// and a SHA-256 of each share recorded when it was made).
///
/// A format, like `Age`: its own target with no dependencies but FailurePolicy, so the arithmetic
/// is tested alone and anything (escrow epochs, a future secret) can use it.
public enum Shamir {
    /// One share: `x` is its coordinate (never 0, which is where the secret is), `y` the
    /// polynomials evaluated at `x`, one byte per secret byte.
    public struct Share: Sendable, Equatable {
        public let x: UInt8
        public var y: [UInt8]

        public init(x: UInt8, y: [UInt8]) {
            self.x = x
            self.y = y
        }

        /// Overwrites the evaluations (a share is secret material).
        public mutating func zero() {
            for index in y.indices { y[index] = 0 }
        }
    }

    /// Splits `secret` into `count` shares, any `threshold` of which recover it. Shares get x =
    /// 1...count (the coordinate is not secret; a custodian's share is "share x").
    public static func split(_ secret: [UInt8], threshold: Int, count: Int) throws(ShamirError) -> [Share] {
        var generator = SystemRandomNumberGenerator()
        return try split(secret, threshold: threshold, count: count, using: &generator)
    }

    /// `split` with the coefficients drawn from `generator` (tests only pass a seeded one to
    /// check fixed vectors; keyline always uses the system's CSPRNG).
    public static func split<G: RandomNumberGenerator>(_ secret: [UInt8], threshold: Int, count: Int,
                                                       using generator: inout G) throws(ShamirError) -> [Share] {
        guard !secret.isEmpty else { throw .emptySecret }
        guard threshold >= 2 else { throw .thresholdTooSmall(threshold) }
        guard count >= threshold, count <= 255 else { throw .invalidShareCount(count, threshold: threshold) }
        var shares = (1...count).map { Share(x: UInt8($0), y: [UInt8](repeating: 0, count: secret.count)) }
        var coefficients = [UInt8](repeating: 0, count: threshold)
        defer { for index in coefficients.indices { coefficients[index] = 0 } }
        for (byteIndex, byte) in secret.enumerated() {
            coefficients[0] = byte
            for degree in 1..<threshold { coefficients[degree] = UInt8.random(in: 0...255, using: &generator) }
            for shareIndex in shares.indices {
                shares[shareIndex].y[byteIndex] = GF256.evaluate(coefficients, at: shares[shareIndex].x)
            }
        }
        return shares
    }

    /// Lagrange interpolation at x = 0 of `shares` (at least two, distinct non-zero x, the same
    /// length). Whether they are the right shares, and enough of them, only the caller's
    /// commitment can tell: too few or a wrong one gives a wrong secret, not an error.
    public static func combine(_ shares: [Share]) throws(ShamirError) -> [UInt8] {
        guard shares.count >= 2 else { throw .tooFewShares(shares.count) }
        let length = shares[0].y.count
        guard length > 0 else { throw .emptySecret }
        var seen = Set<UInt8>()
        for share in shares {
            guard share.x != 0 else { throw .zeroCoordinate }
            guard share.y.count == length else { throw .lengthMismatch(x: share.x, length: share.y.count, expected: length) }
            guard seen.insert(share.x).inserted else { throw .duplicateCoordinate(share.x) }
        }
        // The Lagrange basis at 0 depends only on the x coordinates: l_i(0) = prod_{j≠i} x_j / (x_j - x_i),
        // and subtraction is XOR in GF(2^8).
        let basis = shares.indices.map { i in
            shares.indices.reduce(UInt8(1)) { product, j in
                j == i ? product : GF256.multiply(product, GF256.divide(shares[j].x, shares[j].x ^ shares[i].x))
            }
        }
        var secret = [UInt8](repeating: 0, count: length)
        for (share, weight) in zip(shares, basis) {
            for index in 0..<length { secret[index] ^= GF256.multiply(share.y[index], weight) }
        }
        return secret
    }
}

/// Why shares could not be made or combined (the arithmetic's own refusals; which share a
/// person brought, and whether it is the right one, the caller names).
public enum ShamirError: Error, Equatable, Sendable, CustomStringConvertible, ClassifiedError {
    case emptySecret
    case thresholdTooSmall(Int)
    case invalidShareCount(Int, threshold: Int)
    case tooFewShares(Int)
    case zeroCoordinate
    case duplicateCoordinate(UInt8)
    case lengthMismatch(x: UInt8, length: Int, expected: Int)

    public var description: String {
        switch self {
        case .emptySecret: "Shamir: the secret is empty"
        case .thresholdTooSmall(let m): "Shamir: a threshold of \(m) is below 2 (one share alone would be the secret)"
        case .invalidShareCount(let n, let m): "Shamir: \(n) shares for a threshold of \(m): give between \(m) and 255"
        case .tooFewShares(let count): "Shamir: \(count) share given; combining needs at least 2"
        case .zeroCoordinate: "Shamir: a share with x = 0 (that is where the secret is, never a share)"
        case .duplicateCoordinate(let x): "Shamir: share \(x) is given twice"
        case .lengthMismatch(let x, let length, let expected): "Shamir: share \(x) has \(length) bytes, the others \(expected)"
        }
    }

    public var failureClass: FailureClass { .badInput }
}
