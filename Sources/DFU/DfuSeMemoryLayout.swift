/// DfuSe memory layout strings, the alt-setting `iInterface` strings of ST UM0290 as dfu-util's
/// `dfuse_mem.c` reads them (reference dfu-protocol.md §2.3, device-os-keys.md §2):
/// `@<name>/0x<start>/<count>*<size><mult><type>[,…][/0x<start>/…]`.

public struct DfuSeMemoryLayout: Sendable, Hashable, CustomStringConvertible {
    /// Segment attributes: dfu-util takes `letter & 7` (1 readable, 2 erasable, 4 writeable).
    public struct Attributes: OptionSet, Sendable, Hashable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let readable = Attributes(rawValue: 1)
        public static let erasable = Attributes(rawValue: 2)
        public static let writable = Attributes(rawValue: 4)

        /// The layout letter: `a` read-only … `g` readable+erasable+writeable.
        public var letter: Character { Character(Unicode.Scalar(UInt8(0x60) | (rawValue & 7))) }
    }

    /// A run of equal sectors.
    public struct Segment: Sendable, Hashable {
        public var start: UInt32
        public var sectorSize: UInt32
        public var sectorCount: Int
        public var attributes: Attributes

        public init(start: UInt32, sectorSize: UInt32, sectorCount: Int, attributes: Attributes) {
            self.start = start
            self.sectorSize = sectorSize
            self.sectorCount = sectorCount
            self.attributes = attributes
        }

        /// One past the last byte (UInt64: a segment may end at 4 GiB).
        public var end: UInt64 { UInt64(start) + UInt64(sectorSize) * UInt64(sectorCount) }

        public func contains(_ address: UInt32) -> Bool { address >= start && UInt64(address) < end }

        /// Start of the sector holding `address`.
        public func sectorStart(containing address: UInt32) -> UInt32 {
            start + (address - start) / sectorSize * sectorSize
        }
    }

    public var name: String
    public var segments: [Segment]

    public init(name: String, segments: [Segment]) {
        self.name = name
        self.segments = segments
    }

    public struct ParseError: Error, Sendable, Hashable, CustomStringConvertible {
        public var string: String
        public var detail: String
        public var description: String { "memory layout \"\(string)\": \(detail)" }
    }

    /// Parses a layout string. Counts and sizes may have more digits than UM0290 allows (real
    /// devices send `192*004Kg`, `2048*004Kg`); the name keeps its trailing spaces trimmed.
    public init(parsing string: String) throws(ParseError) {
        func fail(_ detail: String) -> ParseError { ParseError(string: string, detail: detail) }
        guard string.hasPrefix("@") else { throw fail("does not start with '@' (not a DfuSe layout)") }
        var parts = string.dropFirst().split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count >= 3 else { throw fail("needs a name, a start address and segments") }
        name = String(parts.removeFirst().reversed().drop(while: { $0 == " " }).reversed())
        segments = []
        while !parts.isEmpty {
            let addressText = parts.removeFirst().trimmingSpaces
            if addressText.isEmpty && parts.isEmpty { break }  // trailing '/'
            guard addressText.lowercased().hasPrefix("0x"), let start = UInt32(addressText.dropFirst(2), radix: 16) else {
                throw fail("bad start address \"\(addressText)\"")
            }
            guard !parts.isEmpty else { throw fail("start address \(addressText) has no segments") }
            var address = UInt64(start)
            for item in parts.removeFirst().split(separator: ",") {
                let text = String(item).trimmingSpaces
                guard let star = text.firstIndex(of: "*"), let count = Int(text[..<star]), count > 0 else {
                    throw fail("bad segment \"\(text)\"")
                }
                let rest = text[text.index(after: star)...]
                let digits = rest.prefix(while: { $0.isASCII && $0.isNumber })
                guard let size = UInt64(digits), size > 0 else { throw fail("bad sector size in \"\(text)\"") }
                var tail = rest.dropFirst(digits.count)
                var multiplier: UInt64 = 1
                switch tail.first {
                case "K": multiplier = 1024; tail = tail.dropFirst()
                case "M": multiplier = 1024 * 1024; tail = tail.dropFirst()
                case "B", " ": tail = tail.dropFirst()
                default: break
                }
                guard tail.count == 1, let type = tail.first?.asciiValue else {
                    throw fail("segment \"\(text)\" has no single type letter")
                }
                // The string comes from a device: counts and sizes of any length must not trap.
                let (sectorSize, sizeOverflow) = size.multipliedReportingOverflow(by: multiplier)
                let (length, lengthOverflow) = sectorSize.multipliedReportingOverflow(by: UInt64(count))
                guard !sizeOverflow, !lengthOverflow, sectorSize <= UInt64(UInt32.max), length <= (1 << 32) - address else {
                    throw fail("segment \"\(text)\" runs past 4 GiB")
                }
                segments.append(Segment(start: UInt32(address), sectorSize: UInt32(sectorSize), sectorCount: count,
                                        attributes: Attributes(rawValue: type & 7)))
                address += length
            }
        }
        guard !segments.isEmpty else { throw fail("has no segments") }
    }

    /// The canonical string for this layout (`@Name /0xSTART/NN*SSSKx,…`), as Particle bootloaders format it.
    public var layoutString: String {
        var out = "@\(name)   "
        var expected: UInt64? = nil
        var first = true
        for segment in segments {
            if expected != UInt64(segment.start) {
                out += "/" + hex32(segment.start) + "/"
                first = true
            }
            if !first { out += "," }
            first = false
            let (size, unit): (UInt32, String) = segment.sectorSize % (1024 * 1024) == 0 ? (segment.sectorSize / (1024 * 1024), "M")
                : segment.sectorSize % 1024 == 0 ? (segment.sectorSize / 1024, "K") : (segment.sectorSize, "B")
            out += pad(segment.sectorCount, 2) + "*" + pad(Int(size), 3) + unit + String(segment.attributes.letter)
            expected = segment.end
        }
        return out
    }

    public var description: String { layoutString }

    public func segment(containing address: UInt32) -> Segment? {
        segments.first { $0.contains(address) }
    }

    /// Segments overlapping [address, address+length), or nil if any byte lies outside the layout.
    public func segments(covering address: UInt32, length: Int) -> [Segment]? {
        guard length > 0 else { return [] }
        var result: [Segment] = []
        var cursor = UInt64(address)
        let end = UInt64(address) + UInt64(length)
        while cursor < end {
            guard cursor <= UInt64(UInt32.max), let segment = segment(containing: UInt32(cursor)) else { return nil }
            result.append(segment)
            cursor = segment.end
        }
        return result
    }

    /// Start addresses of every sector overlapping the range, in erasable segments only.
    public func erasableSectors(covering address: UInt32, length: Int) -> [UInt32] {
        guard let covered = segments(covering: address, length: length) else { return [] }
        let end = UInt64(address) + UInt64(length)
        var sectors: [UInt32] = []
        for segment in covered where segment.attributes.contains(.erasable) {
            var sector = UInt64(segment.sectorStart(containing: max(address, segment.start)))
            while sector < min(end, segment.end) {
                sectors.append(UInt32(sector))
                sector += UInt64(segment.sectorSize)
            }
        }
        return sectors
    }

    /// True when every segment is neither readable nor writeable: how Protected Device mode
    /// shows in the layout (`…Kb`, device-os-keys.md §2).
    public var isProtected: Bool {
        segments.allSatisfy { !$0.attributes.contains(.readable) && !$0.attributes.contains(.writable) }
    }

    /// Total bytes described.
    public var size: UInt64 { segments.reduce(0) { $0 + $1.end - UInt64($1.start) } }
}

private func pad(_ value: Int, _ width: Int) -> String {
    let s = String(value)
    return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
}

extension String {
    fileprivate var trimmingSpaces: String {
        String(self.drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
    }
}
