/// age's ASCII armor: strict PEM-like framing of the binary file with padded, canonical
/// base64 in 64-column lines (age-encryption.org/v1, "ASCII armor"). Readers accept LF or CRLF
/// and whitespace around the block, nothing else. Mirrors the `armor` package of FiloSottile/age.
public enum AgeArmor {
    static let beginLine = Array("-----BEGIN AGE ENCRYPTED FILE-----".utf8)
    static let endLine = Array("-----END AGE ENCRYPTED FILE-----".utf8)
    static let columnsPerLine = 64
    private static let whitespace: Set<UInt8> = [0x20, 0x09, 0x0a, 0x0d]

    /// Wraps a binary age file in armor, ending with a newline.
    public static func encode(_ binary: [UInt8]) -> [UInt8] {
        var writer = Writer()
        return writer.encode(binary) + writer.finish()
    }

    /// Armors a binary file handed over in pieces: 48 bytes make one 64-column line.
    struct Writer {
        private var pending: [UInt8] = []
        private var started = false

        /// The armor text for `bytes` that is complete so far (whole lines only).
        mutating func encode(_ bytes: [UInt8]) -> [UInt8] {
            var out: [UInt8] = []
            if !started {
                out = beginLine + [UInt8(ascii: "\n")]
                started = true
            }
            pending += bytes
            let whole = pending.count / 48 * 48
            out += lines(StrictBase64.encode(pending[..<whole], padded: true))
            pending.removeFirst(whole)
            return out
        }

        /// The last, possibly short and padded, line and the END line.
        mutating func finish() -> [UInt8] {
            var out = encode([])
            out += lines(StrictBase64.encode(pending, padded: true))
            pending.removeAll()
            return out + endLine + [UInt8(ascii: "\n")]
        }

        private func lines(_ encoded: [UInt8]) -> [UInt8] {
            var out: [UInt8] = []
            out.reserveCapacity(encoded.count + encoded.count / columnsPerLine + 1)
            var offset = 0
            while offset < encoded.count {
                let end = min(offset + columnsPerLine, encoded.count)
                out += encoded[offset..<end]
                out.append(UInt8(ascii: "\n"))
                offset = end
            }
            return out
        }
    }

    /// True when `data`, after leading whitespace, starts like a PEM block ("-----"). Any such
    /// input is read as armor, so a wrong or miscased BEGIN line is an armor error rather than
    /// "not an age file".
    public static func isArmored(_ data: [UInt8]) -> Bool {
        guard let start = data.firstIndex(where: { !whitespace.contains($0) }) else { return false }
        return data[start...].starts(with: beginLine.prefix(5))
    }

    /// Unwraps an armored age file to its binary form.
    public static func decode(_ data: [UInt8]) throws(AgeError) -> [UInt8] {
        var position = data.firstIndex(where: { !whitespace.contains($0) }) ?? data.count
        // Lines end in LF or CRLF; the END line may also end the input.
        func nextLine() -> ArraySlice<UInt8>? {
            guard position < data.count else { return nil }
            let newline = data[position...].firstIndex(of: UInt8(ascii: "\n")) ?? data.count
            var line = data[position..<newline]
            position = min(newline + 1, data.count)
            if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
            return line
        }
        guard let first = nextLine(), first.elementsEqual(beginLine) else {
            throw .malformedArmor("the first line is not \"-----BEGIN AGE ENCRYPTED FILE-----\"")
        }
        var binary: [UInt8] = []
        binary.reserveCapacity(data.count * 3 / 4)
        var sawShortLine = false
        while true {
            guard let line = nextLine() else {
                throw .malformedArmor("the \"-----END AGE ENCRYPTED FILE-----\" line is missing")
            }
            if line.elementsEqual(endLine) { break }
            guard !sawShortLine else {
                throw .malformedArmor("a line shorter than \(columnsPerLine) columns must be the last before the END line")
            }
            guard !line.isEmpty, line.count <= columnsPerLine else {
                throw .malformedArmor("body lines must be 1 to \(columnsPerLine) columns of base64")
            }
            guard let decoded = StrictBase64.decode(line, padded: true) else {
                throw .malformedArmor("a body line is not canonical padded base64")
            }
            binary += decoded
            if line.count < columnsPerLine || line.last == UInt8(ascii: "=") { sawShortLine = true }
        }
        guard data[position...].allSatisfy({ whitespace.contains($0) }) else {
            throw .malformedArmor("there is data after the END line")
        }
        return binary
    }
}
