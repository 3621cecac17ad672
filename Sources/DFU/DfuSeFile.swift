import HexEncoding

/// ST DfuSe `.dfu` files (UM0391, as dfu-util's `dfuse.c` and `dfuse-pack.py` handle them;
/// dfu-protocol.md §1.7): an 11-byte prefix, targets (one per alt) of address/data elements,
/// and the 16-byte DFU suffix with bcdDFU 0x011A.

public struct DfuSeFile: Sendable, Hashable {
    public struct Element: Sendable, Hashable {
        public var address: UInt32
        public var data: [UInt8]
        public init(address: UInt32, data: [UInt8]) {
            self.address = address
            self.data = data
        }
    }

    public struct Target: Sendable, Hashable {
        public var alt: UInt8
        /// Up to 255 bytes; empty means unnamed.
        public var name: String
        public var elements: [Element]
        public init(alt: UInt8, name: String = "", elements: [Element]) {
            self.alt = alt
            self.name = name
            self.elements = elements
        }
    }

    public struct FormatError: Error, Sendable, Hashable, CustomStringConvertible {
        public var detail: String
        public var description: String { "not a valid DfuSe file: \(detail)" }
    }

    public var targets: [Target]
    public var suffix: DFUFileSuffix

    public init(targets: [Target], vendorID: UInt16 = 0xFFFF, productID: UInt16 = 0xFFFF, deviceVersion: UInt16 = 0xFFFF) {
        self.targets = targets
        self.suffix = DFUFileSuffix(deviceVersion: deviceVersion, productID: productID, vendorID: vendorID, dfuVersion: 0x011A)
    }

    static let prefixLength = 11
    static let targetPrefixLength = 274

    public init(bytes: [UInt8]) throws(FormatError) {
        guard let suffix = DFUFileSuffix(file: bytes) else { throw FormatError(detail: "no valid DFU suffix (signature, length or CRC)") }
        guard suffix.dfuVersion == 0x011A else { throw FormatError(detail: "suffix bcdDFU is \(Hex.word(suffix.dfuVersion)), not 011a") }
        let body = Array(bytes.dropLast(DFUFileSuffix.length))
        guard body.count >= Self.prefixLength, Array(body.prefix(5)) == Array("DfuSe".utf8) else {
            throw FormatError(detail: "missing the \"DfuSe\" prefix")
        }
        guard body[5] == 0x01 else { throw FormatError(detail: "prefix version \(body[5]) is not 1") }
        let count = Int(body[10])
        var offset = Self.prefixLength
        var targets: [Target] = []
        for index in 0..<count {
            guard offset + Self.targetPrefixLength <= body.count, Array(body[offset..<offset + 6]) == Array("Target".utf8) else {
                throw FormatError(detail: "target \(index) has no \"Target\" prefix at byte \(offset)")
            }
            let alt = body[offset + 6]
            let named = body[offset + 7] != 0
            let nameBytes = body[offset + 11..<offset + 266].prefix(while: { $0 != 0 })
            let size = Int(le32(body, offset + 266))
            let elementCount = Int(le32(body, offset + 270))
            offset += Self.targetPrefixLength
            guard offset + size <= body.count else {
                throw FormatError(detail: "target \(index) claims \(size) bytes but the file ends first")
            }
            let end = offset + size
            var elements: [Element] = []
            for e in 0..<elementCount {
                guard offset + 8 <= end else { throw FormatError(detail: "element \(e) of target \(index) is truncated") }
                let address = le32(body, offset)
                let length = Int(le32(body, offset + 4))
                offset += 8
                guard offset + length <= end else {
                    throw FormatError(detail: "element \(e) of target \(index) claims \(length) bytes past the target's end")
                }
                elements.append(Element(address: address, data: Array(body[offset..<offset + length])))
                offset += length
            }
            guard offset == end else { throw FormatError(detail: "target \(index) has \(end - offset) bytes after its elements") }
            targets.append(Target(alt: alt, name: named ? String(decoding: nameBytes, as: UTF8.self) : "", elements: elements))
        }
        guard offset == body.count else { throw FormatError(detail: "\(body.count - offset) bytes after the last target") }
        self.targets = targets
        self.suffix = suffix
    }

    /// The file as dfuse-pack.py writes it (DFUImageSize covers prefix, targets and suffix).
    public var bytes: [UInt8] {
        var body: [UInt8] = []
        for target in targets {
            let elementBytes = target.elements.flatMap { le32Bytes($0.address) + le32Bytes(UInt32($0.data.count)) + $0.data }
            var name = Array(target.name.utf8.prefix(254))
            name += [UInt8](repeating: 0, count: 255 - name.count)
            body += Array("Target".utf8) + [target.alt] + le32Bytes(target.name.isEmpty ? 0 : 1) + name
                + le32Bytes(UInt32(elementBytes.count)) + le32Bytes(UInt32(target.elements.count)) + elementBytes
        }
        let total = UInt32(Self.prefixLength + body.count + DFUFileSuffix.length)
        let prefix = Array("DfuSe".utf8) + [0x01] + le32Bytes(total) + [UInt8(targets.count)]
        return suffix.appended(to: prefix + body)
    }
}

extension DfuSeDevice {
    /// Downloads every element of a DfuSe file to its target's alt (dfu-util processes all targets).
    public func download(_ file: DfuSeFile, verify: Bool = true, progress: DFUProgressHandler? = nil) async throws(DFUError) {
        for target in file.targets {
            for element in target.elements {
                try await write(alt: target.alt, address: element.address, bytes: element.data, verify: verify, progress: progress)
            }
        }
    }
}
