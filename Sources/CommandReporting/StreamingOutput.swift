import Foundation

/// Standard output written a 64 KiB block at a time, built byte by byte: a million-row audit
/// formats its rows without a String (or Data, or JSON encoder) per row or field. Writes go
/// straight to the file descriptor and every one is checked, so a full disk under a redirected
/// output is a clear error (exit 74) rather than a silently short listing.
public final class StreamingOutput {
    private var buffer: [UInt8] = []
    private let fd: Int32
    private let name: String

    public init(fd: Int32 = STDOUT_FILENO, name: String = "standard output") {
        self.fd = fd
        self.name = name
        buffer.reserveCapacity(1 << 17)
    }

    /// Text as is.
    public func text(_ text: String) {
        var text = text
        text.withUTF8 { buffer.append(contentsOf: $0) }
    }

    public func byte(_ byte: UInt8) { buffer.append(byte) }

    public func int(_ value: Int64) {
        if value < 0 { buffer.append(UInt8(ascii: "-")) }
        var magnitude = value.magnitude
        let start = buffer.count
        repeat {  // least significant digit first, then reversed in place
            buffer.append(UInt8(ascii: "0") + UInt8(magnitude % 10))
            magnitude /= 10
        } while magnitude > 0
        buffer[start...].reverse()
    }

    /// An RFC 4180 field: quoted (quotes doubled) only when it holds a comma, quote or line break.
    public func csvField(_ text: String) {
        var text = text
        text.withUTF8 { bytes in
            guard bytes.contains(where: { $0 == 0x2c || $0 == 0x22 || $0 == 0x0a || $0 == 0x0d }) else {
                buffer.append(contentsOf: bytes)
                return
            }
            buffer.append(0x22)
            for byte in bytes {
                if byte == 0x22 { buffer.append(0x22) }
                buffer.append(byte)
            }
            buffer.append(0x22)
        }
    }

    /// A JSON string literal (RFC 8259 §7): quote, backslash and control characters escaped.
    public func jsonString(_ text: String) {
        var text = text
        buffer.append(0x22)
        text.withUTF8 { bytes in
            for byte in bytes {
                switch byte {
                case 0x22: buffer.append(contentsOf: [0x5c, 0x22])
                case 0x5c: buffer.append(contentsOf: [0x5c, 0x5c])
                case 0x0a: buffer.append(contentsOf: [0x5c, UInt8(ascii: "n")])
                case 0x0d: buffer.append(contentsOf: [0x5c, UInt8(ascii: "r")])
                case 0x09: buffer.append(contentsOf: [0x5c, UInt8(ascii: "t")])
                case 0..<0x20:
                    let hex = Array("0123456789abcdef".utf8)
                    buffer.append(contentsOf: [0x5c, UInt8(ascii: "u"), 0x30, 0x30, hex[Int(byte >> 4)], hex[Int(byte & 0xf)]])
                default: buffer.append(byte)
                }
            }
        }
        buffer.append(0x22)
    }

    /// `"name":` then the value as a JSON string.
    public func jsonField(_ name: StaticString, _ value: String, comma: Bool = true) {
        if comma { buffer.append(0x2c) }
        buffer.append(0x22)
        name.withUTF8Buffer { buffer.append(contentsOf: $0) }
        buffer.append(contentsOf: [0x22, 0x3a])
        jsonString(value)
    }

    public func jsonField(_ name: StaticString, _ value: Int64) {
        buffer.append(contentsOf: [0x2c, 0x22])
        name.withUTF8Buffer { buffer.append(contentsOf: $0) }
        buffer.append(contentsOf: [0x22, 0x3a])
        int(value)
    }

    /// `text` padded with spaces to `width` characters (a column of the table).
    public func padded(_ text: String, _ width: Int) {
        self.text(text)
        let count = text.count
        if count < width { buffer.append(contentsOf: repeatElement(0x20, count: width - count)) }
    }

    /// Writes the buffer out once it holds a block.
    public func endRecord() throws {
        if buffer.count >= 1 << 16 { try flush() }
    }

    public func flush() throws {
        var offset = 0
        defer { buffer.removeAll(keepingCapacity: true) }
        while offset < buffer.count {
            let written = buffer.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if written < 0 {
                if errno == EINTR { continue }
                let code = errno
                throw CommandFailure(kind: "cannotWriteOutput",
                                     message: "cannot write the audit to \(name) (\(String(cString: strerror(code)))); the listing is incomplete",
                                     context: ["errno": String(code)], exit: .ioError)
            }
            offset += written
        }
    }
}
