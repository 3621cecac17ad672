import Age
import LocalFiles

/// What a streamed encryption or decryption wrote: its SHA-256 (lowercase hex) and length.
public struct StreamedOutput: Sendable, Equatable {
    public let sha256: String
    public let byteCount: Int
}

/// age files of any size (`keyline escrow encrypt|decrypt`), streamed from a source to a sink a
/// chunk at a time, the output's digest computed on the way. An age error names the input
/// (`inputName`: its path or "standard input"), whichever end it came from: the operator's
/// question is which file did not encrypt or decrypt. Blocking I/O, as `Age.encrypt(from:to:…)`.
public enum AgeFileStreams {
    public static func encrypt<Source: AgeByteSource, Sink: AgeByteSink>(
        from source: inout Source, named inputName: String, to sink: Sink, recipients: [X25519Recipient], armor: Bool
    ) throws -> StreamedOutput {
        var digesting = DigestingSink(sink)
        try naming(inputName) { try Age.encrypt(from: &source, to: &digesting, recipients: recipients, armor: armor) }
        return StreamedOutput(sha256: digesting.sha256, byteCount: digesting.byteCount)
    }

    /// Decrypts into `sink` as each chunk authenticates: on an error the sink holds authentic but
    /// incomplete plaintext, so it must be one that is published only on success (a pending file).
    public static func decrypt<Source: AgeByteSource, Sink: AgeByteSink>(
        from source: inout Source, named inputName: String, to sink: Sink, identities: [X25519Identity]
    ) throws -> StreamedOutput {
        var digesting = DigestingSink(sink)
        try naming(inputName) { try Age.decrypt(from: &source, to: &digesting, identities: identities) }
        return StreamedOutput(sha256: digesting.sha256, byteCount: digesting.byteCount)
    }

    /// The whole plaintext, returned only once all of it authenticated: for an output such as a
    /// terminal or a pipe that cannot take back what it was given.
    public static func decryptWhole<Source: AgeByteSource>(
        from source: inout Source, named inputName: String, identities: [X25519Identity]
    ) throws -> [UInt8] {
        var sink = ByteArraySink()
        try naming(inputName) { try Age.decrypt(from: &source, to: &sink, identities: identities) }
        return sink.bytes
    }

    private static func naming(_ inputName: String, _ body: () throws -> Void) throws {
        do {
            try body()
        } catch let error as AgeError {
            throw FileContentError(path: inputName, error: error)
        }
    }
}
