import Crypto
import Foundation

/// age v1 file encryption (https://age-encryption.org/v1): a random 16-byte file key wrapped
/// to each recipient in the header, a header MAC keyed from the file key, and the payload in
/// STREAM chunks keyed by HKDF from the file key and a random nonce. Mirrors `age.go`
/// (top-level Encrypt/Decrypt) in FiloSottile/age. Backups are small and handled whole in
/// memory; large files stream through `AgeByteSource` / `AgeByteSink` one 64 KiB chunk at a time.
public enum Age {
    static let fileKeySize = 16
    static let payloadNonceSize = 16

    /// Encrypts `plaintext` to every recipient (any one of their identities decrypts).
    /// With `armor`, the result is ASCII-armored text; otherwise the binary format.
    public static func encrypt(_ plaintext: [UInt8], to recipients: [any AgeRecipient], armor: Bool = false) throws -> [UInt8] {
        let (head, payloadKey) = try makeHeader(recipients)
        var out = head
        try AgeStream.seal(plaintext, key: payloadKey, into: &out)
        return armor ? AgeArmor.encode(out) : out
    }

    /// Encrypts everything `source` yields into `sink`, one chunk at a time (memory use does not
    /// grow with the input). Blocking I/O: call it off Swift's cooperative pool.
    public static func encrypt<Source: AgeByteSource, Sink: AgeByteSink>(
        from source: inout Source, to sink: inout Sink, recipients: [any AgeRecipient], armor: Bool = false
    ) throws {
        let (head, payloadKey) = try makeHeader(recipients)
        var armorWriter = armor ? AgeArmor.Writer() : nil
        func output(_ bytes: [UInt8]) throws {
            let encoded = armorWriter?.encode(bytes) ?? bytes
            try encoded.withUnsafeBytes { try sink.write($0) }
        }
        try output(head)
        var sealer = AgeStream.Sealer(key: payloadKey)
        var buffer: [UInt8] = []
        var chunk: [UInt8] = []
        chunk.reserveCapacity(AgeStream.encryptedChunkSize)
        // One byte of look-ahead tells whether a full chunk is the last one.
        var atEnd = try source.fill(&buffer, upTo: AgeStream.chunkSize + 1)
        repeat {
            let take = min(AgeStream.chunkSize, buffer.count)
            chunk.removeAll(keepingCapacity: true)
            try buffer.withUnsafeBytes { try sealer.seal(UnsafeRawBufferPointer(rebasing: $0[..<take]), last: buffer.count <= AgeStream.chunkSize, into: &chunk) }
            try output(chunk)
            buffer.removeFirst(take)
            if !sealer.finished && !atEnd { atEnd = try source.fill(&buffer, upTo: AgeStream.chunkSize + 1) }
        } while !sealer.finished
        if let tail = armorWriter?.finish() { try tail.withUnsafeBytes { try sink.write($0) } }
    }

    /// The header for a new file key wrapped to `recipients`, plus the payload nonce, and the payload key.
    static func makeHeader(_ recipients: [any AgeRecipient]) throws -> (bytes: [UInt8], payloadKey: SymmetricKey) {
        guard !recipients.isEmpty else { throw AgeError.noRecipients }
        var fileKey = [UInt8](repeating: 0, count: fileKeySize)
        fillRandom(&fileKey)
        var stanzas: [AgeStanza] = []
        for recipient in recipients { stanzas += try recipient.wrap(fileKey: fileKey) }

        let headerWithoutMAC = AgeHeader.encodeWithoutMAC(stanzas)
        let mac = HMAC<SHA256>.authenticationCode(for: headerWithoutMAC, using: headerMACKey(fileKey: fileKey))
        var out = AgeHeader.encode(withoutMAC: headerWithoutMAC, mac: Array(mac))
        var nonce = [UInt8](repeating: 0, count: payloadNonceSize)
        fillRandom(&nonce)
        out += nonce
        return (out, payloadKey(fileKey: fileKey, nonce: nonce))
    }

    /// Decrypts a binary or armored age file with the first identity that unwraps a stanza.
    public static func decrypt(_ file: [UInt8], identities: [any AgeIdentity]) throws -> [UInt8] {
        var plaintext: [UInt8] = []
        plaintext.reserveCapacity(file.count)
        try decrypt(file, identities: identities) { chunk in chunk.withUnsafeBytes { plaintext.append(contentsOf: $0) } }
        return plaintext
    }

    /// Decrypts a binary or armored age file, handing plaintext to `emit` chunk by chunk as each
    /// chunk authenticates. On a payload error, what was emitted before it is authentic but the
    /// file as a whole is not: callers must discard or flag it.
    public static func decrypt(_ file: [UInt8], identities: [any AgeIdentity], emit: (Data) throws -> Void) throws {
        guard !identities.isEmpty else { throw AgeError.noIdentities }
        let binary = AgeArmor.isArmored(file) ? try AgeArmor.decode(file) : file
        let header = try AgeHeader.parse(binary)
        let fileKey = try openHeader(header, identities: identities)
        guard binary.count - header.payloadOffset >= payloadNonceSize else { throw AgeError.truncated(.payloadNonce) }
        let nonce = Array(binary[header.payloadOffset..<(header.payloadOffset + payloadNonceSize)])
        try AgeStream.open(binary[(header.payloadOffset + payloadNonceSize)...], key: payloadKey(fileKey: fileKey, nonce: nonce), emit: emit)
    }

    /// Headers larger than this are refused when streaming (real ones are well under 1 KiB per recipient).
    static let maximumStreamedHeaderSize = 1 << 20

    /// Decrypts what `source` yields into `sink`, one chunk at a time, writing each chunk as it
    /// authenticates. On an error, what was written is authentic but incomplete: callers must
    /// discard it (the CLI writes to a temporary file and publishes it only on success). Armored
    /// input is read whole (armor is for small, pasted files). Blocking I/O: call it off Swift's
    /// cooperative pool.
    public static func decrypt<Source: AgeByteSource, Sink: AgeByteSink>(
        from source: inout Source, to sink: inout Sink, identities: [any AgeIdentity]
    ) throws {
        guard !identities.isEmpty else { throw AgeError.noIdentities }
        var buffer: [UInt8] = []
        var atEnd = try source.fill(&buffer, upTo: AgeStream.encryptedChunkSize)
        if AgeArmor.isArmored(buffer) {
            while !atEnd { atEnd = try source.fill(&buffer, upTo: buffer.count + AgeStream.encryptedChunkSize) }
            try decrypt(buffer, identities: identities) { chunk in try chunk.withUnsafeBytes { try sink.write($0) } }
            return
        }
        let header = try readHeader(from: &source, into: &buffer, atEnd: &atEnd)
        let fileKey = try openHeader(header, identities: identities)
        let payloadStart = header.payloadOffset + payloadNonceSize
        if buffer.count < payloadStart && !atEnd { atEnd = try source.fill(&buffer, upTo: payloadStart) }
        guard buffer.count >= payloadStart else { throw AgeError.truncated(.payloadNonce) }
        var opener = AgeStream.Opener(key: payloadKey(fileKey: fileKey, nonce: Array(buffer[header.payloadOffset..<payloadStart])))
        buffer.removeFirst(payloadStart)
        while true {
            // One byte of look-ahead: a full chunk with nothing after it may be the final one.
            if !atEnd { atEnd = try source.fill(&buffer, upTo: AgeStream.encryptedChunkSize + 1) }
            let take = min(AgeStream.encryptedChunkSize, buffer.count)
            let (plaintext, last) = try opener.open(buffer[..<take])
            try plaintext.withUnsafeBytes { try sink.write($0) }
            buffer.removeFirst(take)
            if last {
                if buffer.isEmpty && !atEnd { atEnd = try source.fill(&buffer, upTo: 1) }
                guard buffer.isEmpty else { throw AgeError.trailingData(afterChunk: Int(opener.counter) - 1) }
                return
            }
        }
    }

    /// Reads from `source` until `buffer` holds a whole header, and parses it.
    static func readHeader<Source: AgeByteSource>(from source: inout Source, into buffer: inout [UInt8], atEnd: inout Bool) throws -> AgeHeader {
        while true {
            if let header = try AgeHeader.parseIfComplete(buffer, moreMayFollow: !atEnd) { return header }
            guard buffer.count < maximumStreamedHeaderSize else {
                throw AgeError.malformedHeader(line: 0, reason: "the header is larger than \(maximumStreamedHeaderSize) bytes")
            }
            atEnd = try source.fill(&buffer, upTo: buffer.count + AgeStream.encryptedChunkSize)
        }
    }

    /// Unwraps the file key with the first identity that matches, then checks the header MAC.
    static func openHeader(_ header: AgeHeader, identities: [any AgeIdentity]) throws -> [UInt8] {
        guard let fileKey = try unwrapFileKey(header, identities: identities) else {
            throw AgeError.noIdentityMatched(stanzaTypes: header.stanzas.map(\.type))
        }
        guard HMAC<SHA256>.isValidAuthenticationCode(header.mac, authenticating: header.macInput, using: headerMACKey(fileKey: fileKey)) else {
            throw AgeError.headerMACMismatch
        }
        return fileKey
    }

    /// Parses only the header (binary or armored): recipient types and layout, no key needed.
    public static func header(of file: [UInt8]) throws -> AgeHeader {
        try AgeHeader.parse(AgeArmor.isArmored(file) ? try AgeArmor.decode(file) : file)
    }

    static func unwrapFileKey(_ header: AgeHeader, identities: [any AgeIdentity]) throws -> [UInt8]? {
        for identity in identities {
            for stanza in header.stanzas {
                guard let fileKey = try identity.unwrap(stanza) else { continue }
                return fileKey
            }
        }
        return nil
    }

    static func headerMACKey(fileKey: [UInt8]) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(inputKeyMaterial: SymmetricKey(data: fileKey), info: Array("header".utf8), outputByteCount: 32)
    }

    static func payloadKey(fileKey: [UInt8], nonce: [UInt8]) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(inputKeyMaterial: SymmetricKey(data: fileKey), salt: nonce, info: Array("payload".utf8), outputByteCount: 32)
    }

    static func fillRandom(_ bytes: inout [UInt8]) {
        // SymmetricKey draws from the system CSPRNG (BoringSSL's RAND_bytes on Linux).
        let random = SymmetricKey(size: SymmetricKeySize(bitCount: bytes.count * 8))
        random.withUnsafeBytes { bytes = Array($0) }
    }
}
