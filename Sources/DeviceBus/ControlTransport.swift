/// The seam between the DFU client and a USB device: real devices through `USB` (libusb), simulated
/// ones in-process (`Simulator`) or through the libusb stand-in. Everything the DFU client needs is
/// a control transfer on endpoint 0 (USB 2.0 §9.3, DFU 1.1 §3) plus selecting an alternate setting.
///
/// Calls are `async`: an implementation that blocks (libusb's synchronous API, a simulated sector
/// erase) must do so on its own thread or queue, never on Swift's cooperative pool. Transports
/// that own a thread also adopt `DeviceThreadTransport` (DeviceThread.swift), so the DFU client
/// runs a whole operation there with one hand-off instead of two per transfer.
public protocol ControlTransport: Sendable {
    /// One control transfer. Device-to-host (`setup.isDeviceToHost`): returns at most
    /// `setup.length` bytes and `data` is ignored. Host-to-device: sends `data`
    /// (`data.count == setup.length`) and returns `[]`.
    func control(_ setup: ControlSetup, data: [UInt8], timeout: Duration) async throws(USBTransferError) -> [UInt8]

    /// SET_INTERFACE (USB 2.0 §9.4.10). The interface is claimed by the transport when it opens.
    func selectAlternateSetting(interface: UInt8, alternateSetting: UInt8) async throws(USBTransferError)
}

/// A USB SETUP packet (USB 2.0 §9.3).
public struct ControlSetup: Sendable, Hashable, CustomStringConvertible {
    public var requestType: UInt8
    public var request: UInt8
    public var value: UInt16
    public var index: UInt16
    public var length: UInt16

    public init(requestType: UInt8, request: UInt8, value: UInt16, index: UInt16, length: UInt16) {
        self.requestType = requestType
        self.request = request
        self.value = value
        self.index = index
        self.length = length
    }

    /// Bit 7 of bmRequestType: 1 = device-to-host (IN).
    public var isDeviceToHost: Bool { requestType & 0x80 != 0 }

    public var description: String {
        "bmRequestType=0x\(String(requestType, radix: 16)) bRequest=\(request) wValue=\(value) wIndex=\(index) wLength=\(length)"
    }
}

/// Where a device sits on the host: bus number and hub port path (libusb_get_port_numbers), the
/// station's stable name for a physical port.
public struct USBPortPath: Sendable, Hashable, Comparable, CustomStringConvertible, Codable {
    public var bus: UInt8
    public var ports: [UInt8]

    public init(bus: UInt8, ports: [UInt8]) {
        self.bus = bus
        self.ports = ports
    }

    /// Linux sysfs style, as `lsusb -t` and dfu-util print it: "1-2.3".
    public var description: String { "\(bus)-" + ports.map(String.init).joined(separator: ".") }

    public static func < (a: USBPortPath, b: USBPortPath) -> Bool {
        a.bus != b.bus ? a.bus < b.bus : a.ports.lexicographicallyPrecedes(b.ports)
    }
}

/// A failed control transfer, in libusb's terms (libusb_error).
public enum USBTransferError: Error, Sendable, Hashable, CustomStringConvertible {
    /// No answer within the timeout (LIBUSB_ERROR_TIMEOUT).
    case timeout
    /// The device stalled endpoint 0: it refused the request (LIBUSB_ERROR_PIPE).
    case stall
    /// The device is gone: unplugged, reset or re-enumerating (LIBUSB_ERROR_NO_DEVICE).
    case disconnected
    /// Any other transfer failure, with libusb's name for it.
    case io(String)
    /// The task waiting for the transfer (or for the device between transfers) was cancelled.
    case cancelled

    public var description: String {
        switch self {
        case .timeout: "the device did not answer in time"
        case .stall: "the device refused the request (endpoint stall)"
        case .disconnected: "the device disconnected"
        case .io(let detail): "USB I/O error: \(detail)"
        case .cancelled: "cancelled"
        }
    }
}
