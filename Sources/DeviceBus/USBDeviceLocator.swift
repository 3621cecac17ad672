import HexEncoding

/// The seam for finding a device again after it re-enumerates (normal → DFU after Device OS
/// control request 50, DFU → normal after leave). The simulator's fleet implements it in-process;
/// the `USB` target can implement it over libusb enumeration.

/// Which device to wait for: the USB serial (the 24-hex Particle device ID) and acceptable IDs.
public struct USBDeviceMatch: Sendable, Hashable, CustomStringConvertible {
    public var serialNumber: String
    public var vendorID: UInt16
    public var productIDs: Set<UInt16>
    /// Port paths (`1-2.3`) the device may be found on; nil: any. A station's jig allow-list: a
    /// device moved to another port mid-run is not opened there.
    public var ports: Set<String>?

    public init(serialNumber: String, vendorID: UInt16, productIDs: Set<UInt16>, ports: Set<String>? = nil) {
        self.serialNumber = serialNumber
        self.vendorID = vendorID
        self.productIDs = productIDs
        self.ports = ports
    }

    public func matches(_ identity: USBDeviceIdentity) -> Bool {
        identity.vendorID == vendorID && productIDs.contains(identity.productID)
            && identity.serialNumber?.lowercased() == serialNumber.lowercased()
            && (ports?.contains(identity.port.description) ?? true)
    }

    public var description: String {
        let pids = productIDs.sorted().map { Hex.word($0) }.joined(separator: "|")
        return "serial \(serialNumber) (\(Hex.word(vendorID)):\(pids))"
    }
}

/// What enumeration tells about an attached device.
public struct USBDeviceIdentity: Sendable, Hashable, CustomStringConvertible {
    public var port: USBPortPath
    public var vendorID: UInt16
    public var productID: UInt16
    public var serialNumber: String?

    public init(port: USBPortPath, vendorID: UInt16, productID: UInt16, serialNumber: String?) {
        self.port = port
        self.vendorID = vendorID
        self.productID = productID
        self.serialNumber = serialNumber
    }

    public var description: String {
        "\(Hex.word(vendorID)):\(Hex.word(productID)) at \(port)" + (serialNumber.map { " serial \($0)" } ?? "")
    }
}

/// An opened device: its identity and a transport with the DFU interface claimed (in DFU mode).
/// Close the transport before the device re-enumerates or when done, so another owner can open it.
public struct USBOpenedDevice: Sendable {
    public var identity: USBDeviceIdentity
    public var transport: any ClosableControlTransport

    public init(identity: USBDeviceIdentity, transport: any ClosableControlTransport) {
        self.identity = identity
        self.transport = transport
    }
}

public enum USBLocatorError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Nothing matching appeared within the time.
    case timedOut(USBDeviceMatch, after: Duration)
    /// A matching device appeared but could not be opened.
    case openFailed(USBDeviceIdentity, String)
    /// The task waiting was cancelled before a match appeared.
    case cancelled(USBDeviceMatch)

    public var description: String {
        switch self {
        case .timedOut(let match, let after):
            "no device with \(match) appeared within \(after); check the cable and that the device re-enumerated"
        case .openFailed(let identity, let detail):
            "could not open \(identity): \(detail)"
        case .cancelled(let match):
            "stopped waiting for \(match): cancelled"
        }
    }
}

public protocol USBDeviceLocator: Sendable {
    /// Returns as soon as a matching device is attached (including one that already is), opened.
    func waitForDevice(_ match: USBDeviceMatch, timeout: Duration) async throws(USBLocatorError) -> USBOpenedDevice
}

