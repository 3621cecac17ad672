import CLibUSB
import DeviceBus

/// Namespace for facts about Particle's USB identities.
public enum USB {
    /// Particle's vendor ID (every platform since the Photon; device-os-keys.md §3).
    public static let particleVendorID: UInt16 = 0x2B04
    /// The Spark Core's IDs: OpenMoko's VID 0x1D50 with PIDs 0x607D (CDC) and 0x607F (DFU).
    /// Only these two PIDs, because many unrelated open-hardware devices share that VID.
    public static let coreVendorID: UInt16 = 0x1D50
    public static let coreProductIDs: Set<UInt16> = [0x607D, 0x607F]

    /// True for the IDs of a Particle device in either mode.
    public static func isParticle(vendorID: UInt16, productID: UInt16) -> Bool {
        vendorID == particleVendorID || (vendorID == coreVendorID && coreProductIDs.contains(productID))
    }

}

/// A libusb context: enumerates attached Particle devices and opens them. libusb calls run on
/// the context's own thread (initialisation, enumeration, open) or the opened device's own thread
/// (transfers), never on the caller's.
///
/// On a machine with no USB at all (no usbfs, or a sandbox where libusb cannot start), the
/// context still works and every enumeration is empty; `unavailableReason()` says why.
public final class USBContext: @unchecked Sendable {
    let worker = USBWorkerThread(name: "libusb-context")
    private enum State {
        case uninitialized
        case ready(OpaquePointer)
        case unavailable(String)
    }
    /// Touched only on `worker` (and in deinit, when nothing else can).
    private var state = State.uninitialized
    /// Serials already read, per attachment still on the bus (`enumerate()` reads each only
    /// once: a device mid-flash gets no string requests from a station listing the bus).
    /// Touched only on `worker`.
    var serials: [Attachment: String?] = [:]

    /// Creates the context without starting libusb (that happens on first use, on the context's
    /// thread). From async code prefer `make()`, which also starts libusb there, up front.
    public init() {}

    /// A context with libusb already started on the context's own thread: libusb_init scans
    /// usbfs/udev and can block, so it must not run on the caller's (cooperative pool) thread.
    public static func make() async -> USBContext {
        let context = USBContext()
        await context.worker.perform { () -> Void in _ = context.initializedHandle() }
        return context
    }

    /// True once libusb has been started (successfully or not); for tests.
    var isInitialized: Bool {
        get async {
            await worker.perform { () -> Bool in
                if case .uninitialized = self.state { return false }
                return true
            }
        }
    }

    deinit {
        if case .ready(let handle) = state {
            let context = UnsafeContext(handle)
            worker.enqueue { libusb_exit(context.pointer) }
        }
        worker.finish()
    }

    /// libusb_init on first use, on the worker thread: it can take a while (udev, usbfs scan).
    func initializedHandle() -> OpaquePointer? {
        switch state {
        case .ready(let handle): return handle
        case .unavailable: return nil
        case .uninitialized:
            var context: OpaquePointer?
            let code = libusb_init(&context)
            if code == 0, let context {
                state = .ready(context)
                return context
            }
            state = .unavailable("libusb_init failed with \(libusbName(code))")
            return nil
        }
    }

    /// Why this machine has no usable USB (libusb could not start), or nil if it has.
    public func unavailableReason() async -> String? {
        await worker.perform { () -> String? in
            _ = self.initializedHandle()
            if case .unavailable(let reason) = self.state { return reason }
            return nil
        }
    }

    /// True if the loaded libusb is keyline's stand-in (simulated devices) rather than the real one.
    public static var isStandIn: Bool {
        guard let version = libusb_get_version(), let describe = version.pointee.describe else { return false }
        return String(cString: describe).contains("keyline")
    }

    /// Every attached Particle device (normal and DFU mode), sorted by port path. Strings
    /// (serial, product, alternate-setting names) are read by opening each device briefly; a
    /// device that cannot be opened is still listed, with `openError` saying why.
    public func devices() async throws(USBError) -> [USBDeviceInfo] {
        try await worker.perform { () throws(USBError) -> [USBDeviceInfo] in
            guard let handle = self.initializedHandle() else { return [] }
            let listed = try Self.enumerate(handle)
            defer { listed.forEach { libusb_unref_device($0.device) } }
            let infos = listed.map(\.info).sorted { $0.portPath < $1.portPath }
            // A full listing read every serial already: `enumerate()` need not read them again.
            for info in infos where info.serialNumber != nil { self.serials[Attachment(info)] = .some(info.serialNumber) }
            return infos
        }
    }

    /// Opens this enumeration of the device. In DFU mode the DFU interface is claimed, as the
    /// `ControlTransport` contract requires; in normal mode nothing is claimed (the vendor
    /// requests Particle devices answer go to the device, and the CDC interface stays with the
    /// kernel's serial driver).
    public func open(_ device: USBDeviceInfo) async throws(USBError) -> USBDevice {
        try await open(port: device.portPath, address: device.address) { _ in device }
    }

    /// Opens the enumeration at `port` with bus `address` (gone: `.disconnected`), describing it
    /// with `describe`; claims the DFU interface in DFU mode (held elsewhere: `.busy`).
    func open(port: USBPortPath, address: UInt8,
              describe: @escaping @Sendable (USBDeviceInfo) -> USBDeviceInfo) async throws(USBError) -> USBDevice {
        let (opened, info) = try await worker.perform { () throws(USBError) -> (UnsafeContext, USBDeviceInfo) in
            guard let handle = self.initializedHandle() else { throw USBError.notFound(what: "port \(port) (no usable USB)") }
            let candidates = try Self.enumerate(handle, readStrings: false)
            defer { candidates.forEach { libusb_unref_device($0.device) } }
            guard let match = candidates.first(where: { $0.info.portPath == port && $0.info.address == address })
            else { throw USBError.disconnected(port) }
            let info = describe(match.info)
            var deviceHandle: OpaquePointer?
            let code = libusb_open(match.device, &deviceHandle)
            guard code == 0, let deviceHandle else {
                throw USBError.from(code, operation: "open", port: port)
            }
            _ = libusb_set_auto_detach_kernel_driver(deviceHandle, 1)
            if info.mode == .dfu, let interface = info.dfuInterface {
                let claim = libusb_claim_interface(deviceHandle, Int32(interface))
                if claim != 0 {
                    libusb_close(deviceHandle)
                    throw USBError.from(claim, operation: "claim interface \(interface)", port: port)
                }
            }
            return (UnsafeContext(deviceHandle), info)
        }
        return USBDevice(context: self, handle: opened.pointer, info: info,
                         claimedInterface: info.mode == .dfu ? info.dfuInterface : nil)
    }

    // MARK: enumeration (runs on the context's thread)

    struct Enumerated {
        /// Referenced (libusb_ref_device): valid after the device list is freed, until the
        /// caller unrefs it.
        var device: OpaquePointer
        var info: USBDeviceInfo
        /// iSerialNumber, to read the serial later without reading every string.
        var serialIndex: UInt8
    }

    /// One enumeration of a device: its port and bus address (which changes whenever it
    /// re-enumerates), so a serial read once need not be read again while it stays attached.
    struct Attachment: Hashable, Sendable {
        var port: USBPortPath
        var address: UInt8
        init(_ info: USBDeviceInfo) {
            port = info.portPath
            address = info.address
        }
    }

    /// Lists Particle devices (those `include` accepts); with `readStrings`, opens each to read
    /// its strings. Every returned device holds a reference of its own, on both paths, because
    /// the list (and the reference it holds) is freed on return: the caller unrefs each.
    static func enumerate(_ context: OpaquePointer, readStrings: Bool = true,
                                  include: (USBDeviceInfo) -> Bool = { _ in true }) throws(USBError) -> [Enumerated] {
        var list: UnsafeMutablePointer<OpaquePointer?>?
        let count = libusb_get_device_list(context, &list)
        guard count >= 0, let list else {
            throw USBError.from(Int32(count), operation: "get_device_list", port: nil)
        }
        defer { libusb_free_device_list(list, 1) }
        var result: [Enumerated] = []
        for index in 0..<Int(count) {
            guard let device = list[index] else { continue }
            var descriptor = libusb_device_descriptor()
            guard libusb_get_device_descriptor(device, &descriptor) == 0,
                  USB.isParticle(vendorID: descriptor.idVendor, productID: descriptor.idProduct) else { continue }
            var ports = [UInt8](repeating: 0, count: 7)
            let portCount = libusb_get_port_numbers(device, &ports, Int32(ports.count))
            let portPath = USBPortPath(bus: libusb_get_bus_number(device), ports: Array(ports.prefix(Int(max(portCount, 0)))))
            var info = USBDeviceInfo(
                vendorID: descriptor.idVendor, productID: descriptor.idProduct, deviceRelease: descriptor.bcdDevice,
                portPath: portPath, address: libusb_get_device_address(device), mode: .normal,
                serialNumber: nil, manufacturer: nil, product: nil, dfuInterface: nil, alternateSettings: [], openError: nil)
            var alternates: [(number: UInt8, nameIndex: UInt8)] = []
            var config: UnsafeMutablePointer<libusb_config_descriptor>?
            if libusb_get_config_descriptor(device, 0, &config) == 0, let config {
                defer { libusb_free_config_descriptor(config) }
                for i in 0..<Int(config.pointee.bNumInterfaces) {
                    let interface = config.pointee.interface[i]
                    for a in 0..<Int(interface.num_altsetting) {
                        let alt = interface.altsetting[a]
                        // DFU: class 0xFE (application specific), subclass 1; protocol 2 = DFU mode (DFU 1.1 §4.2).
                        guard alt.bInterfaceClass == 0xFE, alt.bInterfaceSubClass == 0x01 else { continue }
                        info.dfuInterface = alt.bInterfaceNumber
                        if alt.bInterfaceProtocol == 0x02 {
                            info.mode = .dfu
                            alternates.append((alt.bAlternateSetting, alt.iInterface))
                        }
                    }
                }
            }
            guard include(info) else { continue }
            if readStrings {
                var handle: OpaquePointer?
                let code = libusb_open(device, &handle)
                if code == 0, let handle {
                    info.serialNumber = string(handle, descriptor.iSerialNumber)
                    info.manufacturer = string(handle, descriptor.iManufacturer)
                    info.product = string(handle, descriptor.iProduct)
                    info.alternateSettings = alternates.map { USBAlternateSetting(number: $0.number, name: string(handle, $0.nameIndex)) }
                    libusb_close(handle)
                } else {
                    info.alternateSettings = alternates.map { USBAlternateSetting(number: $0.number, name: nil) }
                    info.openError = USBError.from(code, operation: "open", port: portPath)
                }
            }
            result.append(Enumerated(device: libusb_ref_device(device), info: info, serialIndex: descriptor.iSerialNumber))
        }
        return result
    }

    static func string(_ handle: OpaquePointer, _ index: UInt8) -> String? {
        guard index != 0 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 256)
        let length = libusb_get_string_descriptor_ascii(handle, index, &buffer, Int32(buffer.count))
        guard length >= 0 else { return nil }
        return String(decoding: buffer.prefix(Int(length)), as: UTF8.self)
    }
}

/// A libusb pointer carried to the thread that owns it. libusb handles are safe to use from any
/// one thread at a time; the owning worker thread serialises every use.
struct UnsafeContext: @unchecked Sendable {
    let pointer: OpaquePointer
    init(_ pointer: OpaquePointer) { self.pointer = pointer }
}
