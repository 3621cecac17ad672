/// Offsets in Device OS `application_dct_t`, identical on STM32F2xx, nRF52840 and rtl872x and pinned
/// by `STATIC_ASSERT_DCT_OFFSET` (device-os-keys.md §1.2). DFU alt 1 addresses are these offsets.
public enum DCTLayout {
    /// The DCT as DFU alt 1 exposes it: `@DCT Flash /0x00000000/1*016Ke`.
    public static let regionSize = 16 * 1024
    /// sizeof(application_dct_t); bytes past it hold nothing meaningful.
    public static let applicationDCTSize = 8391

    /// TCP/RSA private key field; the device reads only the first 612 bytes
    /// (`EXTERNAL_FLASH_CORE_PRIVATE_KEY_LENGTH`).
    public static let devicePrivateKey = DCTSlot(offset: 34, size: 1216)
    /// TCP public key, derived and rewritten by Device OS at boot.
    public static let devicePublicKey = DCTSlot(offset: 1250, size: 384)
    public static let serverPublicKey = DCTSlot(offset: 2082, size: 768)
    /// 0xFF = platform default transport; 0x00 = TCP on an Electron.
    public static let cloudTransport = DCTSlot(offset: 2977, size: 1)
    /// UDP/EC public key, derived by the device from the private key.
    public static let altDevicePublicKey = DCTSlot(offset: 2978, size: 128)
    public static let altDevicePrivateKey = DCTSlot(offset: 3106, size: 192)
    public static let altServerPublicKey = DCTSlot(offset: 3298, size: 192)
    public static let altServerAddress = DCTSlot(offset: 3490, size: 128)
    /// Gen 2 copies the STM32 UID here (`HAL_save_device_id()`).
    public static let deviceID = DCTSlot(offset: 3618, size: 12)
}

extension Platform {
    /// Where the device keeps the public key it derives from its private key.
    public var devicePublicKeySlot: DCTSlot {
        cloudProtocol == .tcp ? DCTLayout.devicePublicKey : DCTLayout.altDevicePublicKey
    }
}
