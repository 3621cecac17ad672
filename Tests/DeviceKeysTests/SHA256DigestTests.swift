import DeviceKeys
import Testing

/// The one SHA-256 path: streamed, one-shot and copied digests agree with each other and with a
/// known value, and a copy hashes on independently of its original.
@Suite struct SHA256DigestTests {
    // sha256sum of "ciphertext" and of the empty input.
    static let ciphertext = "305531dcc50ebca31cf1d5b31e9fc76ed51f66b3b6dd5a030c6539ae6532f979"
    static let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    @Test func oneShotAndStreamedAgree() {
        #expect(SHA256Digest.hex(Array("ciphertext".utf8)) == Self.ciphertext)
        #expect(SHA256Digest.hex([]) == Self.empty)
        var streamed = SHA256Digest()
        streamed.update(Array("ciphertext".utf8))
        #expect(SHA256Digest.hash(Array("ciphertext".utf8)) == streamed.finalize())
    }

    @Test func finalizingMidwayLetsHashingGoOn() {
        var digest = SHA256Digest()
        digest.update(Array("cipher".utf8))
        _ = digest.finalize()
        digest.update(Array("text".utf8))
        #expect(digest.finalize() == SHA256Digest.hash(Array("ciphertext".utf8)))
    }

    @Test func aCopyHashesOnByItself() {
        var original = SHA256Digest()
        original.update(Array("cipher".utf8))
        var copy = original
        copy.update(Array("text".utf8))
        #expect(copy.finalize() == SHA256Digest.hash(Array("ciphertext".utf8)))
        #expect(original.finalize() == SHA256Digest.hash(Array("cipher".utf8)))
    }
}
