import Age
import Escrow
import Testing

@Suite struct DigestingSinkTests {
    @Test func digestIsTheSHA256OfWhatPassedThrough() throws {
        var sink = DigestingSink(ByteArraySink())
        for piece in ["cipher", "text"] { try Array(piece.utf8).withUnsafeBytes { try sink.write($0) } }
        #expect(sink.inner.bytes == Array("ciphertext".utf8))
        #expect(sink.byteCount == 10)
        #expect(sink.sha256 == "305531dcc50ebca31cf1d5b31e9fc76ed51f66b3b6dd5a030c6539ae6532f979") // sha256sum of "ciphertext"
    }
}
