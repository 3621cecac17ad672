/// One module slot in a platform's internal flash (DFU alt 0): where a module of a function and
/// index lives and how large it may be (particle-firmware-format.md §3).
public struct FlashRegion: Sendable, Hashable, CustomStringConvertible {
    /// "system-part1", "user-part", "radio-stack", "bootloader" …
    public let name: String
    public let function: ModuleFunction
    public let index: UInt8
    public let start: UInt32
    public let size: UInt32
    /// Whether a pipeline may write this region over DFU (§3.5, §6: bootloaders are not DFU writes).
    public let viaDFU: Bool

    public init(name: String, function: ModuleFunction, index: UInt8, start: UInt32, size: UInt32, viaDFU: Bool = true) {
        self.name = name
        self.function = function
        self.index = index
        self.start = start
        self.size = size
        self.viaDFU = viaDFU
    }

    /// One past the last byte (UInt64: no overflow near 4 GiB).
    public var end: UInt64 { UInt64(start) + UInt64(size) }

    public func contains(address: UInt32, length: Int) -> Bool {
        length >= 0 && address >= start && UInt64(address) + UInt64(length) <= end
    }

    public var description: String {
        "\(name) 0x\(String(start, radix: 16))–0x\(String(end, radix: 16)) (\(size / 1024) KB)"
    }
}

extension Platform {
    /// Every module slot of alt 0 this platform has, including those not written over DFU.
    public var moduleRegions: [FlashRegion] {
        switch mcu {
        case .stm32f1:
            // The Core's layout is not in the reference and it is not simulated: no slots known.
            return []
        case .stm32f2 where id == Platform.electron.id:
            // §3.2: the file "system-part1" is module 3 @0x08060000; part2 = module 1, part3 = module 2.
            return [
                FlashRegion(name: "bootloader", function: .bootloader, index: 0, start: 0x0800_0000, size: 16 * 1024, viaDFU: false),
                FlashRegion(name: "system-part1", function: .systemPart, index: 1, start: 0x0802_0000, size: 128 * 1024),
                FlashRegion(name: "system-part2", function: .systemPart, index: 2, start: 0x0804_0000, size: 128 * 1024),
                FlashRegion(name: "system-part3", function: .systemPart, index: 3, start: 0x0806_0000, size: 128 * 1024),
                FlashRegion(name: "user-part", function: .userPart, index: 1, start: 0x0808_0000, size: 128 * 1024),
            ]
        case .stm32f2:
            // §3.1 Photon / P1 (Device OS ≤ 3.3.x); the bootloader sector is read-only in alt 0.
            return [
                FlashRegion(name: "bootloader", function: .bootloader, index: 0, start: 0x0800_0000, size: 16 * 1024, viaDFU: false),
                FlashRegion(name: "system-part1", function: .systemPart, index: 1, start: 0x0802_0000, size: 256 * 1024),
                FlashRegion(name: "system-part2", function: .systemPart, index: 2, start: 0x0806_0000, size: 256 * 1024),
                FlashRegion(name: "user-part", function: .userPart, index: 1, start: 0x080A_0000, size: 128 * 1024),
            ]
        case .nrf52840:
            // §3.3 Gen3. System part 1 starts at 0x30000 (≤ 6.1) or 0x28000 (6.2+, extended); both
            // end at the 256 KB user part. The 256 KB user part (index 2, 0xB4000) includes the
            // compat 128 KB slot (index 1, 0xD4000), so these two regions overlap on purpose.
            return [
                FlashRegion(name: "radio-stack", function: .radioStack, index: 0, start: 0x0000_1000, size: 0x26000),
                FlashRegion(name: "system-part1", function: .systemPart, index: 1, start: 0x0002_8000, size: 0xB4000 - 0x28000),
                FlashRegion(name: "user-part", function: .userPart, index: 2, start: 0x000B_4000, size: 256 * 1024),
                FlashRegion(name: "user-part-compat", function: .userPart, index: 1, start: 0x000D_4000, size: 128 * 1024),
                FlashRegion(name: "bootloader", function: .bootloader, index: 0, start: 0x000F_4000, size: 48 * 1024, viaDFU: false),
            ]
        case .rtl872x:
            // §3.4 P2 family: the user part ends at 0x08600000 and starts wherever its size puts it.
            return [
                FlashRegion(name: "prebootloader-mbr", function: .bootloader, index: 1, start: 0x0800_0000, size: 16 * 1024, viaDFU: false),
                FlashRegion(name: "bootloader", function: .bootloader, index: 0, start: 0x0800_4000, size: 64 * 1024, viaDFU: false),
                FlashRegion(name: "prebootloader-part1", function: .bootloader, index: 2, start: 0x0801_4000, size: 296 * 1024, viaDFU: false),
                FlashRegion(name: "system-part1", function: .systemPart, index: 1, start: 0x0806_0000, size: 0x081E_0000 - 0x0806_0000),
                FlashRegion(name: "user-part", function: .userPart, index: 1, start: 0x0860_0000 - 0x18_0000, size: 0x18_0000),
            ]
        }
    }

    /// The alt-0 flash map: the regions a pipeline's images may be written to over DFU.
    public var flashMap: [FlashRegion] { moduleRegions.filter(\.viaDFU) }

    /// The slot of a module function and index, if the platform has one.
    public func moduleRegion(function: ModuleFunction, index: UInt8) -> FlashRegion? {
        moduleRegions.first { $0.function == function && $0.index == index }
    }

    /// The DFU-writable region holding all of [address, address + length), if any.
    public func flashRegion(containing address: UInt32, length: Int) -> FlashRegion? {
        flashMap.first { $0.contains(address: address, length: length) }
    }
}
