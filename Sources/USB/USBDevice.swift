import CLibUSB
import DFU

/// An opened device: a `ControlTransport` over libusb's synchronous control transfers, each run
/// on this device's own thread so a long transfer (a sector erase) blocks nothing else.
public final class USBDevice: ClosableControlTransport, @unchecked Sendable {
    public let info: USBDeviceInfo
    private let context: USBContext       // keeps libusb alive while the device is open
    private let handle: OpaquePointer
    private let worker: USBWorkerThread
    private var claimedInterface: UInt8?  // touched only on the worker thread
    private var closed = false            // touched only on the worker thread

    init(context: USBContext, handle: OpaquePointer, info: USBDeviceInfo, claimedInterface: UInt8?) {
        self.context = context
        self.handle = handle
        self.info = info
        self.claimedInterface = claimedInterface
        self.worker = USBWorkerThread(name: "usb \(info.portPath)")
    }

    deinit {
        let handle = UnsafeContext(self.handle)
        let interface = claimedInterface
        if !closed {
            // The closure keeps the context alive until the handle is closed: libusb_exit must
            // not run before libusb_close.
            let context = self.context
            worker.enqueue {
                if let interface { _ = libusb_release_interface(handle.pointer, Int32(interface)) }
                libusb_close(handle.pointer)
                withExtendedLifetime(context) {}
            }
        }
        worker.finish()
    }

    public var portPath: USBPortPath { info.portPath }

    public func control(_ setup: ControlSetup, data: [UInt8], timeout: Duration) async throws(USBTransferError) -> [UInt8] {
        if !setup.isDeviceToHost && data.count != Int(setup.length) {
            throw USBTransferError.io("host-to-device data is \(data.count) bytes but wLength is \(setup.length)")
        }
        let milliseconds = UInt32(clamping: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        return try await worker.perform { () throws(USBTransferError) -> [UInt8] in
            guard !self.closed else { throw USBTransferError.disconnected }
            var buffer = setup.isDeviceToHost ? [UInt8](repeating: 0, count: Int(setup.length)) : data
            let result = buffer.withUnsafeMutableBufferPointer { bytes in
                libusb_control_transfer(self.handle, setup.requestType, setup.request, setup.value, setup.index,
                                        bytes.baseAddress, setup.length, max(milliseconds, 1))
            }
            guard result >= 0 else { throw Self.transferError(result) }
            return setup.isDeviceToHost ? Array(buffer.prefix(Int(result))) : []
        }
    }

    public func selectAlternateSetting(interface: UInt8, alternateSetting: UInt8) async throws(USBTransferError) {
        try await worker.perform { () throws(USBTransferError) in
            guard !self.closed else { throw USBTransferError.disconnected }
            if self.claimedInterface != interface {
                let claim = libusb_claim_interface(self.handle, Int32(interface))
                guard claim == 0 else { throw Self.transferError(claim) }
                self.claimedInterface = interface
            }
            let result = libusb_set_interface_alt_setting(self.handle, Int32(interface), Int32(alternateSetting))
            guard result == 0 else { throw Self.transferError(result) }
        }
    }

    /// Releases the interface and closes the device. Later transfers fail with `.disconnected`.
    public func close() async {
        await worker.perform { () -> Void in
            guard !self.closed else { return }
            if let interface = self.claimedInterface { _ = libusb_release_interface(self.handle, Int32(interface)) }
            libusb_close(self.handle)
            self.closed = true
        }
    }

    static func transferError(_ code: Int32) -> USBTransferError {
        switch code {
        case LIBUSB_ERROR_TIMEOUT.rawValue: .timeout
        case LIBUSB_ERROR_PIPE.rawValue: .stall
        case LIBUSB_ERROR_NO_DEVICE.rawValue: .disconnected
        default: .io(libusbName(code))
        }
    }
}
