import CLibUSB
import DeviceBus

/// An opened device: a `ControlTransport` over libusb's synchronous control transfers, run on
/// this device's own thread so a long transfer (a sector erase) blocks nothing else. DFU
/// operations run there whole (`onDeviceThread`); single `control` calls hop there one by one.
public final class USBDevice: ClosableControlTransport, DeviceThreadTransport, @unchecked Sendable {
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
        try await worker.perform { () throws(USBTransferError) -> [UInt8] in
            try self.controlOnWorker(setup, data: data, timeout: timeout)
        }
    }

    public func selectAlternateSetting(interface: UInt8, alternateSetting: UInt8) async throws(USBTransferError) {
        try await worker.perform { () throws(USBTransferError) in
            try self.selectAlternateSettingOnWorker(interface: interface, alternateSetting: alternateSetting)
        }
    }

    /// Runs a whole DFU operation on this device's worker thread: one hand-off in, one out, with
    /// libusb's synchronous transfers in between.
    public func onDeviceThread<T: Sendable, E: Error>(_ body: @escaping @Sendable (any BlockingControl) throws(E) -> T) async throws(E) -> T {
        try await DeviceStep.run { (step, finish: @escaping @Sendable (Result<T, E>) -> Void) in
            self.worker.enqueue {
                do throws(E) {
                    finish(.success(try body(WorkerControl(device: self, step: step))))
                } catch {
                    finish(.failure(error))
                }
            }
        }
    }

    /// The device's synchronous control, valid only on its worker thread.
    private struct WorkerControl: BlockingControl {
        let device: USBDevice
        let step: DeviceStep

        func control(_ setup: ControlSetup, data: [UInt8], timeout: Duration) throws(USBTransferError) -> [UInt8] {
            try device.controlOnWorker(setup, data: data, timeout: timeout)
        }

        func selectAlternateSetting(interface: UInt8, alternateSetting: UInt8) throws(USBTransferError) {
            try device.selectAlternateSettingOnWorker(interface: interface, alternateSetting: alternateSetting)
        }
    }

    /// libusb_control_transfer; call only on the worker thread.
    private func controlOnWorker(_ setup: ControlSetup, data: [UInt8], timeout: Duration) throws(USBTransferError) -> [UInt8] {
        if !setup.isDeviceToHost && data.count != Int(setup.length) {
            throw USBTransferError.io("host-to-device data is \(data.count) bytes but wLength is \(setup.length)")
        }
        guard !closed else { throw USBTransferError.disconnected }
        let milliseconds = UInt32(clamping: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        if setup.isDeviceToHost {
            let length = Int(setup.length)
            var received: Int32 = 0
            let reply = [UInt8](unsafeUninitializedCapacity: length) { bytes, count in
                received = libusb_control_transfer(handle, setup.requestType, setup.request, setup.value, setup.index,
                                                   bytes.baseAddress, setup.length, max(milliseconds, 1))
                count = received > 0 ? min(Int(received), length) : 0
            }
            guard received >= 0 else { throw Self.transferError(received) }
            return reply
        }
        var buffer = data
        let result = buffer.withUnsafeMutableBufferPointer { bytes in
            libusb_control_transfer(handle, setup.requestType, setup.request, setup.value, setup.index,
                                    bytes.baseAddress, setup.length, max(milliseconds, 1))
        }
        guard result >= 0 else { throw Self.transferError(result) }
        return []
    }

    /// Claims the interface if needed and sets the alternate setting; call only on the worker thread.
    private func selectAlternateSettingOnWorker(interface: UInt8, alternateSetting: UInt8) throws(USBTransferError) {
        guard !closed else { throw USBTransferError.disconnected }
        if claimedInterface != interface {
            let claim = libusb_claim_interface(handle, Int32(interface))
            guard claim == 0 else { throw Self.transferError(claim) }
            claimedInterface = interface
        }
        let result = libusb_set_interface_alt_setting(handle, Int32(interface), Int32(alternateSetting))
        guard result == 0 else { throw Self.transferError(result) }
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
