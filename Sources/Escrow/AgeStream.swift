import Crypto
import Foundation

/// The age v1 payload: STREAM (Hoang, Reyhanitabar, Rogaway, Vizár 2015) over
/// ChaCha20-Poly1305 in 64 KiB chunks. Each chunk's nonce is an 11-byte big-endian counter and
/// a final-chunk flag byte; only the last chunk sets it, so truncation at a chunk boundary is
/// detected (age-encryption.org/v1, "Payload"). Mirrors `internal/stream` in FiloSottile/age.
enum AgeStream {
    static let chunkSize = 64 * 1024
    static let tagSize = 16
    static let encryptedChunkSize = chunkSize + tagSize

    static func nonce(counter: UInt64, last: Bool) -> ChaChaPoly.Nonce {
        var bytes = [UInt8](repeating: 0, count: 12)
        for index in 0..<8 { bytes[10 - index] = UInt8(truncatingIfNeeded: counter >> (8 * UInt64(index))) }
        bytes[11] = last ? 1 : 0
        return try! ChaChaPoly.Nonce(data: bytes)
    }

    /// Encrypts `plaintext` and appends the chunks to `out`. An empty plaintext is one empty final chunk.
    static func seal(_ plaintext: [UInt8], key: SymmetricKey, into out: inout [UInt8]) throws {
        out.reserveCapacity(out.count + plaintext.count + (plaintext.count / chunkSize + 1) * tagSize)
        var counter: UInt64 = 0
        var offset = 0
        try plaintext.withUnsafeBytes { all in
            repeat {
                let end = min(offset + chunkSize, plaintext.count)
                let last = end == plaintext.count
                let box = try ChaChaPoly.seal(UnsafeRawBufferPointer(rebasing: all[offset..<end]), using: key, nonce: nonce(counter: counter, last: last))
                out += box.ciphertext
                out += box.tag
                counter += 1
                offset = end
                if last { break }
            } while true
        }
    }

    /// Decrypts the STREAM `payload`, handing each authenticated chunk to `emit` as soon as it
    /// verifies. Throws at the first chunk that does not authenticate, is cut short, or follows
    /// the final one; what was emitted before stays valid (each chunk is authenticated alone).
    static func open(_ payload: ArraySlice<UInt8>, key: SymmetricKey, emit: (Data) throws -> Void) throws {
        var counter: UInt64 = 0
        var offset = payload.startIndex
        while true {
            let chunk = Int(counter)
            let end = min(offset + encryptedChunkSize, payload.endIndex)
            let encrypted = payload[offset..<end]
            guard encrypted.count >= tagSize else {
                // Nothing but a final chunk may end the stream, and even an empty one has a tag.
                throw AgeError.truncated(.payload(chunk: chunk))
            }
            let body = encrypted.dropLast(tagSize), tag = encrypted.suffix(tagSize)
            var last = encrypted.count < encryptedChunkSize
            var plaintext: Data
            if let opened = try? ChaChaPoly.open(ChaChaPoly.SealedBox(nonce: nonce(counter: counter, last: last), ciphertext: body, tag: tag), using: key) {
                plaintext = opened
            } else if !last, let opened = try? ChaChaPoly.open(ChaChaPoly.SealedBox(nonce: nonce(counter: counter, last: true), ciphertext: body, tag: tag), using: key) {
                // A full-size chunk may be the final one; only trying the flag tells.
                plaintext = opened
                last = true
            } else {
                // A final chunk cut short inside its ciphertext looks exactly like a modified
                // one: without its tag nothing tells the two apart.
                throw AgeError.payloadAuthenticationFailed(chunk: chunk)
            }
            if last && plaintext.isEmpty && counter > 0 {
                throw AgeError.malformedPayload(chunk: chunk, reason: "an empty final chunk is only allowed for an empty payload")
            }
            try emit(plaintext)
            offset = end
            counter += 1
            if last {
                guard offset == payload.endIndex else { throw AgeError.trailingData(afterChunk: chunk) }
                return
            }
        }
    }
}
