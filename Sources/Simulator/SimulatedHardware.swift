import ParticlePlatform

/// Per-MCU facts the simulator needs beyond the platform table: DfuSe alt strings, bootloader
/// quirks and a flash/USB timing model. Layout strings are copied character for character from
/// the bootloaders (dfu-protocol.md §2.3, device-os-keys.md §2).
public struct SimulatedHardware: Sendable, Hashable {
    /// Which bootloader's DfuSe implementation the device runs.
    public enum Bootloader: String, Sendable, Hashable, Codable {
        /// Gen2 STM32F2 (ST USB device library, Particle `usbd_dfu_core.c`): ignores MAL failures,
        /// reports dfuDNLOAD-IDLE to the leave GETSTATUS.
        case stm32f2
        /// Gen3 nRF52840 and rtl872x (Particle `usbd_dfu.cpp`): MAL failures → dfuERROR/errUNKNOWN,
        /// reports dfuMANIFEST to the leave GETSTATUS, Protected Device mode.
        case particleGen3
    }

    /// How an alt's memory behaves when programmed.
    public enum MemoryKind: String, Sendable, Hashable, Codable {
        /// NOR flash: erase sets bytes to 0xFF, programming can only clear bits.
        case norFlash
        /// The DCT behind `dct_write_app_data`: writes replace bytes, erase is a no-op.
        case dct
    }

    public struct Alt: Sendable, Hashable {
        public var layoutString: String
        public var kind: MemoryKind
        /// Protected Device mode variant of the string (`…Kb`), if the bootloader has one.
        public var protectedLayoutString: String?
        public var timing: FlashTiming
    }

    public var bootloader: Bootloader
    public var alts: [Alt]
    /// bcdDevice of the DFU-mode device descriptor (device-os-keys.md §3: 0x0250 Gen2, 0x0251 nRF, 0x0252 rtl).
    public var dfuDeviceVersion: UInt16
    /// UPLOAD block 0 reply (dfu-protocol.md §2.1).
    public var dfuseCommands: [UInt8]
    public var usb: USBTiming
    /// Whether this MCU copies its UID into the DCT device-ID field at boot (Gen2 `HAL_save_device_id()`).
    public var savesDeviceIDInDCT: Bool
    /// nRF52840 bootloaders ≥ 3.1 erase the compat user part at 0xD4000 after a valid module is
    /// written at 0xB4000 (particle-firmware-format.md, "Bootloader side effects worth simulating").
    public var invalidatesCompatUserPart = false
    /// Whether Device OS generates a missing device key when the application boots (Gen2
    /// `application_start()`, then a reset) or only when it starts a cloud connection
    /// (Gen3 and rtl872x, `Spark_Protocol_Init()`): device-os-keys.md §1.6 "Callers".
    public var generatesKeyAtBoot = false
}

/// Flash timing for one alt. Sources: dfu-protocol.md §5.1 (STM32F2 DS6329 typical values,
/// nRF52840 PS v1.11 maxima); rtl872x and external SPI flash figures are estimates, not measured.
public struct FlashTiming: Sendable, Hashable {
    /// Sector erase time by sector size in bytes; sizes not listed scale from `erasePerKiB`.
    public var eraseBySectorSize: [UInt32: Duration]
    public var erasePerKiB: Duration
    /// Programming time per byte.
    public var programPerByte: Duration
    /// Fixed cost of one write call (the Gen2 DCT copies a 16 KB sector per `dct_write_app_data`).
    public var writeOverhead: Duration
    /// bwPollTimeout (modelled ms) reported in the dfuDNBUSY reply after an ERASE and after
    /// anything else; the device scales it by the time scale, and it stays in later replies
    /// until the next dfuDNBUSY (dfu-protocol.md §5.3).
    public var reportedPollAfterErase: UInt32
    public var reportedPollOtherwise: UInt32

    public func eraseTime(sectorSize: UInt32) -> Duration {
        eraseBySectorSize[sectorSize] ?? erasePerKiB * Int(sectorSize / 1024)
    }

    public func programTime(bytes: Int) -> Duration { writeOverhead + programPerByte * bytes }
}

/// Full-speed USB control transfer cost: a turnaround that is the device's and host's own, plus
/// time on the (possibly shared) full-speed wire; and the delays of re-enumeration.
public struct USBTiming: Sendable, Hashable {
    /// Host and device turnaround per control transfer, not on the shared wire (assumption:
    /// 0.5 ms, the host controller's scheduling and the device answering its SETUP; other
    /// devices' packets use the wire meanwhile).
    public var perTransfer: Duration
    /// Signalling rate of the wire: 12 Mbit/s, USB full speed (dfu-protocol.md §5.2, "Both MCUs
    /// use USB **full speed** (12 Mbit/s) with a 64-byte EP0").
    public var bitsPerSecond: Int
    /// Bytes on the wire per control transfer besides its data (USB 2.0 Table 5-5, full-speed
    /// control transfer limits: 45 bytes of protocol overhead for SETUP, one data packet and
    /// status), and per further 64-byte data packet (assumption: token, SYNC, PID, CRC16,
    /// handshake and inter-packet gaps, 13 bytes). Bit stuffing is not modelled (assumption).
    public var overheadBytes: Int
    public var overheadPerExtraPacket: Int
    /// From the disconnect to the new enumeration (request 50 → DFU, or reset): typical observed
    /// time, an assumption (not measured here).
    public var reenumeration: Duration
    /// Application start after reset (before the normal-mode device enumerates): assumption.
    public var boot: Duration
    /// Particle bootloaders reset ~500 ms after the leave GETSTATUS (dfu-protocol.md §2.2,
    /// "resets ~500 ticks later", `USBD_DFU_POLL_TIMEOUT`).
    public var leaveDelay: Duration
    /// Normal mode: from the application's start to its first cloud connection, when a Gen3
    /// device generates a missing key (device-os-keys.md §1.6). Assumption: 5 s for a radio to
    /// come up and the handshake to start; `--cloud-delay` changes it.
    public var cloudConnection: Duration

    /// Wire time of one control transfer with `bytes` in its data stage: 8 bits per byte at
    /// `bitsPerSecond`; a 4096-byte transfer (64 packets) is 4960 bytes ≈ 3.3 ms.
    public func wireTime(bytes: Int) -> Duration {
        let packets = max(1, (bytes + 63) / 64)
        let total = overheadBytes + bytes + overheadPerExtraPacket * (packets - 1)
        return .nanoseconds(Int64(total) * 8 * 1_000_000_000 / Int64(bitsPerSecond))
    }

    /// One device alone on its wire: turnaround plus wire time.
    public func transferTime(bytes: Int) -> Duration { perTransfer + wireTime(bytes: bytes) }
}

extension FlashTiming {
    /// STM32F2 internal flash, ×32 parallelism (DS6329 typ.): 16 KB 250 ms, 64 KB 550 ms,
    /// 128 KB 1 s; 16 µs per word = 4 µs per byte.
    static let stm32f2Internal = FlashTiming(
        eraseBySectorSize: [16 * 1024: .milliseconds(250), 64 * 1024: .milliseconds(550), 128 * 1024: .milliseconds(1000)],
        erasePerKiB: .milliseconds(8), programPerByte: .microseconds(4), writeOverhead: .zero,
        reportedPollAfterErase: 0, reportedPollOtherwise: 0)
    /// Gen2 DCT: each `dct_write_app_data` rewrites a 16 KB sector (erase + program); ERASE is a
    /// no-op. ST's `MAL_GetStatus` reports 500 ms after ERASE and 1 ms otherwise (dfu-protocol.md §5.3:
    /// "the dfuDNBUSY reply after a DCT **ERASE** carries 500 ms and after a DCT write / Set Address
    /// 1 ms"). Write: 250 ms for the 16 KB sector erase (§5.1 DS6329, "16 KB sector 250 ms typ") plus
    /// programming 16 KB at 4 µs per byte (64 ms).
    static let stm32f2DCT = FlashTiming(
        eraseBySectorSize: [16 * 1024: .zero], erasePerKiB: .zero, programPerByte: .microseconds(4),
        writeOverhead: .milliseconds(250 + 64), reportedPollAfterErase: 500, reportedPollOtherwise: 1)
    /// nRF52840 NVMC maxima: 85 ms per 4 KB page, 41 µs per word ≈ 10.25 µs per byte.
    static let nrf52840Internal = FlashTiming(
        eraseBySectorSize: [4096: .milliseconds(85)], erasePerKiB: .microseconds(21_250),
        programPerByte: .nanoseconds(10_250), writeOverhead: .zero, reportedPollAfterErase: 0, reportedPollOtherwise: 0)
    /// Gen3 DCT is a LittleFS file on external flash (estimate: 30 ms per write plus SPI programming).
    static let gen3DCT = FlashTiming(
        eraseBySectorSize: [:], erasePerKiB: .zero, programPerByte: .microseconds(2), writeOverhead: .milliseconds(30),
        reportedPollAfterErase: 0, reportedPollOtherwise: 0)
    /// External SPI NOR (estimate, typical MX25 figures): 45 ms per 4 KB sector, ~1.5 µs per byte.
    static let externalSPI = FlashTiming(
        eraseBySectorSize: [4096: .milliseconds(45)], erasePerKiB: .microseconds(11_250),
        programPerByte: .nanoseconds(1_500), writeOverhead: .zero, reportedPollAfterErase: 0, reportedPollOtherwise: 0)
    /// rtl872x internal (XIP SPI) flash: estimate, 50 ms per 4 KB, 8 µs per byte.
    static let rtl872xInternal = FlashTiming(
        eraseBySectorSize: [4096: .milliseconds(50)], erasePerKiB: .microseconds(12_500),
        programPerByte: .microseconds(8), writeOverhead: .zero, reportedPollAfterErase: 0, reportedPollOtherwise: 0)
}

extension USBTiming {
    /// Full speed; each figure is sourced or marked as an assumption at its declaration.
    public static let fullSpeed = USBTiming(perTransfer: .microseconds(500), bitsPerSecond: 12_000_000, overheadBytes: 45,
                                            overheadPerExtraPacket: 13, reenumeration: .milliseconds(800),
                                            boot: .milliseconds(1500), leaveDelay: .milliseconds(500),
                                            cloudConnection: .seconds(5))
}

extension SimulatedHardware {
    /// The hardware of a platform's devices, keyed by MCU (and P1's serial flash); nil for the
    /// Core (STM32F1), whose DFU bootloader and external-flash keys are not simulated.
    public static func forPlatform(_ platform: Platform) -> SimulatedHardware? {
        switch platform.mcu {
        case .stm32f1:
            return nil
        case .stm32f2:
            var alts = [
                Alt(layoutString: "@Internal Flash   /0x08000000/03*016Ka,01*016Kg,01*064Kg,07*128Kg", kind: .norFlash,
                    protectedLayoutString: nil, timing: .stm32f2Internal),
                Alt(layoutString: "@DCT Flash   /0x00000000/01*016Kg", kind: .dct, protectedLayoutString: nil, timing: .stm32f2DCT),
            ]
            if platform.name == "p1" {
                // Only P1 defines HAS_SERIAL_FLASH (device-os-keys.md §2).
                alts.append(Alt(layoutString: "@Serial Flash   /0x00000000/256*004Kg", kind: .norFlash,
                                protectedLayoutString: nil, timing: .externalSPI))
            }
            return SimulatedHardware(bootloader: .stm32f2, alts: alts, dfuDeviceVersion: 0x0250,
                                     dfuseCommands: [0x00, 0x21, 0x41], usb: .fullSpeed, savesDeviceIDInDCT: true,
                                     generatesKeyAtBoot: true)
        case .nrf52840:
            let big = ["b5som", "tracker", "esomx"].contains(platform.name)
            return SimulatedHardware(
                bootloader: .particleGen3,
                alts: [
                    Alt(layoutString: "@Internal Flash   /0x00000000/1*004Ka,47*004Kg,192*004Kg,4*004Kg,4*004Kg,8*004Ka", kind: .norFlash,
                        protectedLayoutString: "@Internal Flash   /0x00000000/1*004Kb,47*004Kb,192*004Kb,4*004Kb,4*004Kb,8*004Kb",
                        timing: .nrf52840Internal),
                    Alt(layoutString: "@DCT Flash   /0x00000000/1*016Ke", kind: .dct,
                        protectedLayoutString: "@DCT Flash   /0x00000000/1*016Kb", timing: .gen3DCT),
                    Alt(layoutString: big ? "@External Flash   /0x80000000/2048*004Kg" : "@External Flash   /0x80000000/1024*004Kg",
                        kind: .norFlash, protectedLayoutString: nil, timing: .externalSPI),
                ],
                dfuDeviceVersion: 0x0251, dfuseCommands: [0x00, 0x21, 0x41, 0xFA, 0xFB], usb: .fullSpeed, savesDeviceIDInDCT: false,
                invalidatesCompatUserPart: true)
        case .rtl872x:
            return SimulatedHardware(
                bootloader: .particleGen3,
                alts: [
                    Alt(layoutString: "@Internal Flash   /0x08000000/2048*004Kg", kind: .norFlash,
                        protectedLayoutString: "@Internal Flash   /0x08000000/2048*004Kb", timing: .rtl872xInternal),
                    Alt(layoutString: "@DCT Flash   /0x00000000/1*016Ke", kind: .dct,
                        protectedLayoutString: "@DCT Flash   /0x00000000/1*016Kb", timing: .gen3DCT),
                ],
                dfuDeviceVersion: 0x0252, dfuseCommands: [0x00, 0x21, 0x41, 0xFA, 0xFB], usb: .fullSpeed, savesDeviceIDInDCT: false)
        }
    }
}
