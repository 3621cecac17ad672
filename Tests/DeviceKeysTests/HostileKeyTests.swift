import DeviceKeys
import Foundation
import Testing
import TestSupport

/// Issue 12, "Inputs that cost too much or pass where they should not": every parse is bounded by
/// what can be legitimate, sizes before arithmetic, arithmetic before OpenSSL's primality tests.
/// (How fast they are refused is measured by `keyline-bench hostile-inputs`, not asserted here.)
@Suite struct HostileKeyInputs {
    @Test func fileLargerThanAnyKeyIsRefusedBeforeParsing() {
        let crafted = HostileKeys.craftedRSA(modulusBytes: 8192, primeBytes: 4096)
        #expect(crafted.count > 16 * 1024)
        #expect(throws: DeviceKeyError.fileTooLarge(size: crafted.count, limit: KeyFile.maximumFileSize)) { try KeyFile.parse(crafted) }
        let noise = [UInt8](repeating: 0x42, count: 16 << 20)
        #expect(throws: DeviceKeyError.fileTooLarge(size: noise.count, limit: KeyFile.maximumFileSize)) { try KeyFile.parse(noise) }
    }

    @Test func modulusLargerThan4096BitsIsRefusedBeforeAnyCheck() {
        let crafted = HostileKeys.craftedRSA(modulusBytes: 700, primeBytes: 350)
        #expect(crafted.count <= KeyFile.maximumFileSize)
        #expect(throws: DeviceKeyError.keyTooLarge(bits: 5600, limit: 4096)) { try KeyFile.parse(crafted) }
        #expect(throws: DeviceKeyError.keyTooLarge(bits: 5600, limit: 4096)) { try DevicePrivateKey(der: crafted) }
    }

    /// p and q far larger than n: refused by their sizes, never tested for primality.
    @Test func primesLargerThanTheModulusAreInconsistent() {
        let crafted = HostileKeys.craftedRSA(modulusBytes: 128, primeBytes: 1500)
        #expect(throws: DeviceKeyError.inconsistentKeyPair(algorithm: .rsa)) { try KeyFile.parse(crafted) }
    }

    /// RSA-2048 and larger skip the primality tests (no device uses them), so the arithmetic
    /// check must catch a damaged CRT value on its own.
    @Test func damagedCRTValueOfALargeKeyIsCaught() async throws {
        let tool = try OpenSSLTool()
        defer { tool.remove() }
        let key = try #require(KeyFile.parse(try await tool.run("genrsa", "-traditional", "2048")).privateKey)
        let der = key.der
        #expect(key.publicKey.bits == 2048)
        #expect(try DevicePrivateKey(der: der).der == der)
        for offset in [der.count - 10, der.count - 140, der.count - 270] {  // qInv, dQ, dP
            var damaged = der
            damaged[offset] ^= 0x01
            #expect(throws: DeviceKeyError.inconsistentKeyPair(algorithm: .rsa), "offset \(offset)") { try DevicePrivateKey(der: damaged) }
        }
    }

    /// A multi-prime key (RFC 8017 version 1) is no device's key, and the arithmetic check
    /// covers two primes only.
    @Test func multiPrimeRSAIsRefused() async throws {
        let tool = try OpenSSLTool()
        defer { tool.remove() }
        let pem = try await tool.run("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024", "-pkeyopt", "rsa_keygen_primes:3")
        #expect(throws: DeviceKeyError.unsupportedAlgorithm("multi-prime RSA (more than two primes)")) { try KeyFile.parse(pem) }
    }

    @Test func pemWithTwoKeysIsRefused() throws {
        let first = try DevicePrivateKey.generate(.ec), second = try DevicePrivateKey.generate(.rsa)
        let pem = Array((try first.pem() + second.publicKey.pem).utf8)
        #expect(throws: DeviceKeyError.severalKeysInPEM(count: 2)) { try KeyFile.parse(pem) }
        // EC PARAMETERS before the key (`openssl ecparam -genkey`) is not a second key.
        let withParameters = Array(("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n" + (try first.pem())).utf8)
        #expect(try KeyFile.parse(withParameters).publicKey == first.publicKey)
    }

    @Test func slotDumpIsAtMostTheLargestSlot() throws {
        let key = try DevicePrivateKey.generate(.rsa)
        let dump = key.der + [UInt8](repeating: 0xFF, count: 612 - key.der.count)
        #expect(try KeyFile.parse(dump).container == .slotDump)
        let core = key.der + [UInt8](repeating: 0xFF, count: KeyFile.largestSlotDump - key.der.count)
        #expect(try KeyFile.parse(core).container == .slotDump)
        let tooLong = core + [0xFF]
        #expect(throws: DeviceKeyError.tooLongForSlotDump(keyLength: key.der.count, fileLength: tooLong.count, largestSlot: 1024)) {
            try KeyFile.parse(tooLong)
        }
    }

    /// Keys larger than any device uses are still described, so `keys inspect` can say why they
    /// do not fit.
    @Test func largeLegitimateKeysStillParse() async throws {
        let tool = try OpenSSLTool()
        defer { tool.remove() }
        for bits in ["2048", "4096"] {
            let key = try #require(KeyFile.parse(try await tool.run("genrsa", "-traditional", bits)).privateKey)
            #expect(String(key.publicKey.bits) == bits)
        }
    }
}
