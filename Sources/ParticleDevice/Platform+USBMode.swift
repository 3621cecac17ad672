import DeviceBus
import ParticlePlatform

// The platform table in USB terms: which VID:PID a platform shows in which mode. Here, not in
// ParticlePlatform, because the mode is the device bus's notion (normal or DFU enumeration).
extension Platform {
    public func productID(_ mode: USBMode) -> UInt16 { mode == .dfu ? dfuProductID : normalProductID }

    /// The platform and mode a USB VID:PID belongs to, or nil for a non-Particle device.
    public static func matching(vendorID: UInt16, productID: UInt16) -> (platform: Platform, mode: USBMode)? {
        for platform in all where platform.vendorID == vendorID {
            if platform.normalProductID == productID { return (platform, .normal) }
            if platform.dfuProductID == productID { return (platform, .dfu) }
        }
        return nil
    }
}
