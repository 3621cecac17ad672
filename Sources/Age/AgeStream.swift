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

    /// Encrypts chunk by chunk. The caller decides which chunk is last (it must know whether more
    /// plaintext follows); only the last may be shorter than 64 KiB, and only a lone one empty.
    struct Sealer {
        let key: SymmetricKey
        private(set) var counter: UInt64 = 0
        private(set) var finished = false

        init(key: SymmetricKey) { self.key = key }

        mutating func seal(_ plaintext: UnsafeRawBufferPointer, last: Bool, into out: inout [UInt8]) throws {
            precondition(!finished && plaintext.count <= chunkSize && (last || plaintext.count == chunkSize))
            let box = try ChaChaPoly.seal(plaintext, using: key, nonce: nonce(counter: counter, last: last))
            // `combined` is nonce (12 bytes) || ciphertext || tag; one append copies the last two.
            box.combined.withUnsafeBytes { out.append(contentsOf: UnsafeRawBufferPointer(rebasing: $0[12...])) }
            counter += 1
            finished = last
        }
    }

    /// Decrypts chunk by chunk. Each call gets the next 64 KiB + 16 bytes of ciphertext (fewer
    /// only at the end of the input); it returns the chunk's plaintext once authenticated, and
    /// whether it was the final chunk (then nothing may follow it). Behaviour at the edges follows FiloSottile/age: a full-size
    /// chunk is tried as a middle chunk first, then as the final one.
    struct Opener {
        let key: SymmetricKey
        private(set) var counter: UInt64 = 0

        init(key: SymmetricKey) { self.key = key }

        mutating func open(_ encrypted: ArraySlice<UInt8>) throws -> (plaintext: Data, last: Bool) {
            let chunk = Int(counter)
            guard encrypted.count >= tagSize else {
                // Nothing but a final chunk may end the stream, and even an empty one has a tag.
                throw AgeError.truncated(.payload(chunk: chunk))
            }
            let body = encrypted.prefix(encrypted.count - tagSize), tag = encrypted.suffix(tagSize)
            var last = encrypted.count < encryptedChunkSize
            let plaintext: Data
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
            counter += 1
            return (plaintext, last)
        }
    }

    /// Encrypts `plaintext` and appends the chunks to `out`. An empty plaintext is one empty final chunk.
    static func seal(_ plaintext: [UInt8], key: SymmetricKey, into out: inout [UInt8]) throws {
        out.reserveCapacity(out.count + plaintext.count + (plaintext.count / chunkSize + 1) * tagSize)
        var sealer = Sealer(key: key)
        try plaintext.withUnsafeBytes { all in
            var offset = 0
            repeat {
                let end = min(offset + chunkSize, plaintext.count)
                try sealer.seal(UnsafeRawBufferPointer(rebasing: all[offset..<end]), last: end == plaintext.count, into: &out)
                offset = end
            } while !sealer.finished
        }
    }

    /// Decrypts the STREAM `payload`, handing each authenticated chunk to `emit` as soon as it
    /// verifies. Throws at the first chunk that does not authenticate, is cut short, or follows
    /// the final one; what was emitted before stays valid (each chunk is authenticated alone).
    static func open(_ payload: ArraySlice<UInt8>, key: SymmetricKey, emit: (Data) throws -> Void) throws {
        var opener = Opener(key: key)
        var offset = payload.startIndex
        while true {
            let end = min(offset + encryptedChunkSize, payload.endIndex)
            let (plaintext, last) = try opener.open(payload[offset..<end])
            try emit(plaintext)
            offset = end
            if last {
                guard offset == payload.endIndex else { throw AgeError.trailingData(afterChunk: Int(opener.counter) - 1) }
                return
            }
        }
    }
}
