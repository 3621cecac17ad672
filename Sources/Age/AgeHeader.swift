/// The age v1 header: the version line, recipient stanzas and the MAC line
/// (age-encryption.org/v1, "Header"). Parsing is strict (LF line endings, canonical unpadded
/// base64, 64-column body lines ending in a short line) so every header has a single encoding
/// and the MAC can be checked over the bytes exactly as they were read.
/// Mirrors `internal/format` in FiloSottile/age.

/// One recipient stanza: `-> type arg…` followed by a base64 body.
public struct AgeStanza: Equatable, Sendable {
    public var type: String
    public var arguments: [String]
    public var body: [UInt8]

    public init(type: String, arguments: [String], body: [UInt8]) {
        self.type = type
        self.arguments = arguments
        self.body = body
    }
}

public struct AgeHeader: Equatable, Sendable {
    static let versionLine = Array("age-encryption.org/v1".utf8)
    static let columnsPerLine = 64

    public var stanzas: [AgeStanza]
    /// HMAC-SHA-256 over `macInput`, keyed from the file key.
    public var mac: [UInt8]
    /// The header bytes through `---` (without the following space), as the MAC covers them.
    var macInput: [UInt8]
    /// Where the payload (16-byte nonce, then STREAM) starts in the parsed buffer.
    public var payloadOffset: Int

    /// Parses the header at the start of `file`.
    public static func parse(_ file: [UInt8]) throws(AgeError) -> AgeHeader {
        var position = 0
        var lineNumber = 0
        func nextLine() throws(AgeError) -> ArraySlice<UInt8> {
            guard position < file.count,
                  let newline = file[position...].firstIndex(of: UInt8(ascii: "\n")) else {
                throw .truncated(.header)
            }
            let line = file[position..<newline]
            position = newline + 1
            lineNumber += 1
            if line.last == UInt8(ascii: "\r") {
                throw .malformedHeader(line: lineNumber, reason: "line ends with CRLF; age headers end lines with LF only")
            }
            return line
        }

        let prefix = Array("age-encryption.org/".utf8)
        // Anything that differs from "age-encryption.org/" in its first bytes is not age at all;
        // a correct but short start is a truncated file.
        guard file.prefix(prefix.count).elementsEqual(prefix.prefix(file.count)) else { throw .notAnAgeFile }
        let first = try nextLine()
        guard first.elementsEqual(versionLine) else {
            guard first.starts(with: prefix) else { throw .notAnAgeFile }
            throw .unsupportedVersion(printable(first.dropFirst(prefix.count)))
        }

        var stanzas: [AgeStanza] = []
        while true {
            let lineStart = position
            let line = try nextLine()
            if line.starts(with: Array("--- ".utf8)) {
                let encoded = line.dropFirst(4)
                guard let mac = StrictBase64.decode(encoded, padded: false), mac.count == 32 else {
                    throw .malformedHeader(line: lineNumber, reason: "the MAC is not 32 bytes of canonical unpadded base64")
                }
                return AgeHeader(stanzas: stanzas, mac: mac, macInput: Array(file[0..<(lineStart + 3)]), payloadOffset: position)
            }
            guard line.starts(with: Array("-> ".utf8)) else {
                throw .malformedHeader(line: lineNumber, reason: "expected a recipient stanza (\"-> \") or the MAC line (\"--- \")")
            }
            let arguments = line.dropFirst(3).split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
            for argument in arguments {
                guard !argument.isEmpty, argument.allSatisfy({ $0 >= 33 && $0 <= 126 }) else {
                    throw .malformedHeader(line: lineNumber, reason: "stanza arguments must be non-empty printable ASCII separated by single spaces")
                }
            }
            var body: [UInt8] = []
            while true {
                let bodyLine = try nextLine()
                guard bodyLine.count <= columnsPerLine else {
                    throw .malformedHeader(line: lineNumber, reason: "stanza body line is longer than \(columnsPerLine) columns")
                }
                guard let decoded = StrictBase64.decode(bodyLine, padded: false) else {
                    throw .malformedHeader(line: lineNumber, reason: "stanza body is not canonical unpadded base64")
                }
                body += decoded
                if bodyLine.count < columnsPerLine { break }
            }
            let strings = arguments.map { String(decoding: $0, as: UTF8.self) }
            stanzas.append(AgeStanza(type: strings[0], arguments: Array(strings.dropFirst()), body: body))
        }
    }

    /// Like `parse`, but nil instead of a truncation error when `moreMayFollow`: the caller reads
    /// more and tries again.
    static func parseIfComplete(_ file: [UInt8], moreMayFollow: Bool) throws(AgeError) -> AgeHeader? {
        switch Result(catching: { () throws(AgeError) -> AgeHeader in try parse(file) }) {
        case .success(let header): return header
        case .failure(.truncated(.header)) where moreMayFollow: return nil
        case .failure(let error): throw error
        }
    }

    /// The header through `---`, the bytes the MAC is computed over.
    static func encodeWithoutMAC(_ stanzas: [AgeStanza]) -> [UInt8] {
        var out = versionLine + [UInt8(ascii: "\n")]
        for stanza in stanzas {
            out += Array("-> ".utf8) + Array(([stanza.type] + stanza.arguments).joined(separator: " ").utf8) + [UInt8(ascii: "\n")]
            let encoded = StrictBase64.encode(stanza.body, padded: false)
            var offset = 0
            // Always finish with a short line, empty if the body fills its last line exactly.
            repeat {
                let end = min(offset + columnsPerLine, encoded.count)
                out += encoded[offset..<end] + [UInt8(ascii: "\n")]
                if end - offset < columnsPerLine { break }
                offset = end
            } while true
        }
        out += Array("---".utf8)
        return out
    }

    static func encode(withoutMAC headerWithoutMAC: [UInt8], mac: [UInt8]) -> [UInt8] {
        headerWithoutMAC + [UInt8(ascii: " ")] + StrictBase64.encode(mac, padded: false) + [UInt8(ascii: "\n")]
    }

    private static func printable<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
        String(decoding: bytes.prefix(32).map { $0 >= 32 && $0 < 127 ? $0 : UInt8(ascii: "?") }, as: UTF8.self)
    }
}
