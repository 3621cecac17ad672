import Testing
@testable import Shamir

@Suite struct GF256Tests {
    @Test func multiplicationMatchesFIPS197() {
        // FIPS 197 §4.2: {57} • {83} = {c1}, {57} • {13} = {fe}.
        #expect(GF256.multiply(0x57, 0x83) == 0xC1)
        #expect(GF256.multiply(0x57, 0x13) == 0xFE)
    }

    @Test func everyNonZeroElementHasAnInverse() {
        for a in UInt8(1)...UInt8(255) { #expect(GF256.multiply(a, GF256.inverse(a)) == 1, "a = \(a)") }
    }
}

@Suite struct ShamirTests {
    let secret: [UInt8] = (0..<32).map { UInt8(($0 * 37 + 11) & 0xFF) }

    @Test func anyThreeOfFiveRecoverTheSecret() throws {
        let shares = try Shamir.split(secret, threshold: 3, count: 5)
        #expect(shares.map(\.x) == [1, 2, 3, 4, 5])
        for a in 0..<5 { for b in (a + 1)..<5 { for c in (b + 1)..<5 {
            #expect(try Shamir.combine([shares[c], shares[a], shares[b]]) == secret)
        } } }
        #expect(try Shamir.combine(shares) == secret)
    }

    @Test func twoOfAThreeThresholdGiveSomethingElse() throws {
        let shares = try Shamir.split(secret, threshold: 3, count: 5)
        for a in 0..<5 { for b in (a + 1)..<5 {
            #expect(try Shamir.combine([shares[a], shares[b]]) != secret)
        } }
    }

    @Test func anAlteredShareSilentlyGivesAWrongSecret() throws {
        // Why every caller must check the result against a commitment.
        var shares = try Shamir.split(secret, threshold: 3, count: 5)
        shares[1].y[0] ^= 0x01
        let combined = try Shamir.combine(Array(shares[0..<3]))
        #expect(combined != secret)
        #expect(combined[1...] == secret[1...])
    }

    @Test func sharesRevealNothingAlone() throws {
        // Two splits of the same secret give different shares (fresh coefficients each time).
        let first = try Shamir.split(secret, threshold: 2, count: 2)
        let second = try Shamir.split(secret, threshold: 2, count: 2)
        #expect(first != second)
    }

    @Test func refusesBadParametersAndShares() throws {
        #expect(throws: ShamirError.thresholdTooSmall(1)) { try Shamir.split(secret, threshold: 1, count: 3) }
        #expect(throws: ShamirError.invalidShareCount(2, threshold: 3)) { try Shamir.split(secret, threshold: 3, count: 2) }
        #expect(throws: ShamirError.invalidShareCount(256, threshold: 3)) { try Shamir.split(secret, threshold: 3, count: 256) }
        #expect(throws: ShamirError.emptySecret) { try Shamir.split([], threshold: 2, count: 3) }
        let shares = try Shamir.split(secret, threshold: 2, count: 3)
        #expect(throws: ShamirError.duplicateCoordinate(2)) { try Shamir.combine([shares[1], shares[1]]) }
        #expect(throws: ShamirError.tooFewShares(1)) { try Shamir.combine([shares[0]]) }
        #expect(throws: ShamirError.zeroCoordinate) { try Shamir.combine([shares[0], Shamir.Share(x: 0, y: shares[1].y)]) }
        #expect(throws: ShamirError.lengthMismatch(x: 2, length: 31, expected: 32)) {
            try Shamir.combine([shares[0], Shamir.Share(x: 2, y: Array(shares[1].y.dropLast()))])
        }
    }
}
