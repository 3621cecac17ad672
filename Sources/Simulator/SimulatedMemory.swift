import DFU

/// One alt's memory, stored sparsely in 4 KB pages (unwritten bytes read as 0xFF, like erased
/// flash and like the Gen3 DCT file, which Device OS creates 0xFF-filled).
struct SimulatedMemory: Sendable {
    static let pageSize = 4096

    let layout: DfuSeMemoryLayout
    let kind: SimulatedHardware.MemoryKind
    private(set) var pages: [UInt32: [UInt8]] = [:]

    init(layout: DfuSeMemoryLayout, kind: SimulatedHardware.MemoryKind) {
        self.layout = layout
        self.kind = kind
    }

    /// Whether [address, address+length) lies inside the layout.
    func contains(_ address: UInt32, length: Int) -> Bool {
        layout.segments(covering: address, length: max(length, 1)) != nil
    }

    func read(_ address: UInt32, length: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0xFF, count: length)
        var offset = 0
        while offset < length {
            let a = UInt64(address) + UInt64(offset)
            let page = UInt32(truncatingIfNeeded: a / UInt64(Self.pageSize))
            let within = Int(a % UInt64(Self.pageSize))
            let n = min(Self.pageSize - within, length - offset)
            if let bytes = pages[page] {
                out.withUnsafeMutableBufferPointer { dst in
                    bytes.withUnsafeBufferPointer { src in
                        for i in 0..<n { dst[offset + i] = src[within + i] }
                    }
                }
            }
            offset += n
        }
        return out
    }

    /// Programs bytes. NOR flash ANDs the new bits into what is there (programming cannot set a
    /// bit an erase did not); the DCT replaces them. Returns whether memory now holds `bytes`.
    @discardableResult
    mutating func program(_ address: UInt32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        var exact = true
        while offset < bytes.count {
            let a = UInt64(address) + UInt64(offset)
            let page = UInt32(truncatingIfNeeded: a / UInt64(Self.pageSize))
            let within = Int(a % UInt64(Self.pageSize))
            let n = min(Self.pageSize - within, bytes.count - offset)
            var stored = pages[page] ?? [UInt8](repeating: 0xFF, count: Self.pageSize)
            for i in 0..<n {
                let new = bytes[offset + i]
                let result = kind == .norFlash ? stored[within + i] & new : new
                if result != new { exact = false }
                stored[within + i] = result
            }
            pages[page] = stored.allSatisfy({ $0 == 0xFF }) ? nil : stored
            offset += n
        }
        return exact
    }

    /// Erases the sector holding `address` (returns its size), or nil if outside the layout.
    mutating func eraseSector(containing address: UInt32) -> UInt32? {
        guard let segment = layout.segment(containing: address) else { return nil }
        let start = segment.sectorStart(containing: address)
        var page = start / UInt32(Self.pageSize)
        let end = (UInt64(start) + UInt64(segment.sectorSize)) / UInt64(Self.pageSize)
        while UInt64(page) < end {
            pages[page] = nil
            page += 1
        }
        return segment.sectorSize
    }

    /// Replaces the whole content (persistence).
    mutating func restore(pages: [UInt32: [UInt8]]) {
        self.pages = pages.filter { $0.value.count == Self.pageSize }
    }
}
