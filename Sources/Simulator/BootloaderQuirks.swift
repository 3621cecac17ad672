import DFU

/// Bootloader behaviour beyond the DfuSe state machine proper: Gen3 DETACH, the Gen3 compat
/// user-part invalidation, and the scaling of reported poll timeouts.
extension DfuSeBootloader {
    /// Where a Device OS ≥ 3.1 Gen3 user part starts (`USER_FIRMWARE_IMAGE_LOCATION`,
    /// particle-firmware-format.md §3 table, "0x000B4000 | 256 KB | user part, module index 2").
    static let userPartAddress: UInt32 = 0xB4000
    /// The compat 128 KB user part (particle-firmware-format.md, "0x000D4000 | 128 KB | compat").
    static let compatUserPartAddress: UInt32 = 0xD4000

    /// Gen3 (nRF52840 `usbd_dfu.cpp`) DETACH in DFU mode: the reply goes out, then the bootloader
    /// drops off the bus and re-attaches in DFU mode (a new enumeration; every handle is gone).
    /// Gen2 treats DETACH like ABORT (handled by the caller). Accepted where ABORT is.
    mutating func gen3Detach() -> ControlOutcome {
        let allowed: [DFUState?] = [.dfuIdle, .dnloadSync, .dnloadIdle, .manifestSync, .uploadIdle]
        guard allowed.contains(state) else {
            setError(.errUnknown)
            return .stall
        }
        setState(.dfuIdle)
        status = .ok
        pollTimeout = 0
        pending = nil
        return .data([], after: .reattachDFU)
    }

    /// Gen3 bootloaders ≥ 3.1.0: after a WRITE at 0xB4000 of ≥ 24 bytes whose module info is
    /// valid, the bootloader erases one page at 0xD4000, invalidating a compat 128 KB app
    /// (particle-firmware-format.md, "Bootloader side effects worth simulating", DO HEAD
    /// `usbd_dfu_mal.cpp`, commit 70edb002f). "Valid" is the boot check of the same section: start
    /// address == 0xB4000, end ≤ 0x100000, platform matches (`FLASH_isUserModuleInfoValid`); the
    /// prefix of a user part sits at offset 0. Returns the extra busy time (one page erase).
    mutating func invalidateCompatUserPart(after address: UInt32, payload: [UInt8], alt: Int,
                                           context: inout BootloaderContext) -> Duration {
        guard context.hardware.invalidatesCompatUserPart, alt == 0, address == Self.userPartAddress,
              payload.count >= 24 else { return .zero }
        let start = le32(payload, 0), end = le32(payload, 4)
        let platform = UInt16(payload[12]) | UInt16(payload[13]) << 8
        guard start == Self.userPartAddress, end > start, end <= 0x10_0000, platform == context.platformID,
              let size = context.memories[0].eraseSector(containing: Self.compatUserPartAddress) else { return .zero }
        context.sectorsErased += 1
        return context.hardware.alts[0].timing.eraseTime(sectorSize: size)
    }
}

extension BootloaderContext {
    /// A bwPollTimeout (ms) as the device reports it: the modelled value times the time scale,
    /// so a host that sleeps what it is told (dfu-util) runs at the same scale as the flash
    /// model; 0 at time scale 0. 24 bits on the wire (dfu-protocol.md §1.3).
    func reportedPoll(_ milliseconds: UInt32) -> UInt32 {
        let scaled = (Double(milliseconds) * timeFactor).rounded()
        return scaled.isFinite ? UInt32(min(max(scaled, 0), 0xFF_FFFF)) : 0
    }
}
