import DFU
import DeviceBus
import ParticlePlatform

/// The normal-mode (Device OS application) side of a simulated device: USB control requests of
/// `usb_control_request_channel.cpp` as particle-usb speaks them (device-os-keys.md §4).
struct DeviceOSRuntime: Sendable {
    /// Service request framing (bRequest 1–5) and raw 'P' requests (0x50).
    enum ServiceRequest: UInt8 {
        case initRequest = 1, check = 2, send = 3, receive = 4, reset = 5
    }
    static let rawRequest: UInt8 = 0x50

    /// Control request types (system_control.h).
    enum RequestType {
        static let deviceID: UInt16 = 20
        static let systemVersion: UInt16 = 30
        static let reset: UInt16 = 40
        static let dfuMode: UInt16 = 50
        /// CTRL_REQUEST_CLOUD_GET_CONNECTION_STATUS (system_control.h; device-os-protobuf
        /// control/cloud.proto GetConnectionStatusRequest, type_id 300).
        static let cloudStatus: UInt16 = 300
    }

    enum ReplyStatus: UInt16 { case ok = 0, error = 1, pending = 2, busy = 3, noMemory = 4, notFound = 5 }
    enum Flag { static let status: UInt32 = 1, id: UInt32 = 2, size: UInt32 = 4, result: UInt32 = 8 }
    /// Device OS system_error_t values used here.
    enum SystemError { static let notSupported: Int32 = -120 }

    struct Active: Sendable {
        var type: UInt16
        var payloadSize: Int
        var payload: [UInt8] = []
        var result: Int32?
        var reply: [UInt8] = []
        var completion: AfterReply?
    }

    static let maxActive = 4
    static let systemVersion = "6.2.0"

    var active: [UInt16: Active] = [:]
    var nextID: UInt16 = 1

    mutating func handleVendor(_ setup: ControlSetup, data: [UInt8], deviceID: String, cloudStatus: UInt8 = 0) -> ControlOutcome {
        if setup.request == Self.rawRequest {
            switch (setup.isDeviceToHost, setup.index) {
            case (true, RequestType.deviceID):
                // Raw request 20 answers uppercase hex (bytes2hexbuf), needs wLength ≥ 24.
                guard setup.length >= 24 else { return .stall }
                return .data(Array(deviceID.uppercased().utf8))
            case (true, RequestType.systemVersion):
                return .data(Array(Self.systemVersion.utf8.prefix(Int(setup.length))))
            case (false, RequestType.reset):
                return ControlOutcome(reply: .data([]), after: .reset)
            default:
                return .stall
            }
        }
        guard let request = ServiceRequest(rawValue: setup.request) else { return .stall }
        switch request {
        case .initRequest:
            guard setup.isDeviceToHost else { return .stall }
            guard active.count < Self.maxActive else { return reply(.busy) }
            let id = nextID
            nextID = nextID == UInt16.max ? 1 : nextID + 1
            var entry = Active(type: setup.index, payloadSize: Int(setup.value))
            if entry.payloadSize == 0 { process(&entry, deviceID: deviceID, cloudStatus: cloudStatus) }
            active[id] = entry
            return reply(.ok, id: id)
        case .send:
            guard !setup.isDeviceToHost, var entry = active[setup.index] else { return .stall }
            entry.payload += data
            if entry.payload.count >= entry.payloadSize && entry.result == nil { process(&entry, deviceID: deviceID, cloudStatus: cloudStatus) }
            active[setup.index] = entry
            return .ok
        case .check:
            guard let entry = active[setup.index] else { return reply(.notFound) }
            guard let result = entry.result else { return reply(.pending) }
            if entry.reply.isEmpty {
                active[setup.index] = nil
                return ControlOutcome(reply: .data(replyBytes(.ok, size: 0, result: result)), after: entry.completion)
            }
            return reply(.ok, size: UInt32(entry.reply.count), result: result)
        case .receive:
            guard let entry = active[setup.index], entry.result != nil else { return .stall }
            active[setup.index] = nil
            return ControlOutcome(reply: .data(Array(entry.reply.prefix(Int(setup.length)))), after: entry.completion)
        case .reset:
            if setup.index == 0 { active.removeAll() } else { active[setup.index] = nil }
            return reply(.ok)
        }
    }

    private func process(_ entry: inout Active, deviceID: String, cloudStatus: UInt8) {
        switch entry.type {
        case RequestType.cloudStatus:
            // GetConnectionStatusReply { ConnectionStatus status = 1; }: proto3 leaves out the
            // default (DISCONNECTED = 0), so that reply is empty.
            entry.reply = cloudStatus == 0 ? [] : [0x08, cloudStatus]
            entry.result = 0
        case RequestType.deviceID:
            // GetDeviceIdReply { string id = 1; } — protobuf, lowercase hex.
            entry.reply = [0x0A, UInt8(deviceID.utf8.count)] + Array(deviceID.lowercased().utf8)
            entry.result = 0
        case RequestType.systemVersion:
            entry.reply = [0x0A, UInt8(Self.systemVersion.utf8.count)] + Array(Self.systemVersion.utf8)
            entry.result = 0
        case RequestType.reset:
            entry.result = 0
            entry.completion = .reset
        case RequestType.dfuMode:
            entry.result = 0
            entry.completion = .enterDFU
        default:
            entry.result = SystemError.notSupported
        }
    }

    private func reply(_ status: ReplyStatus, id: UInt16? = nil, size: UInt32? = nil, result: Int32? = nil) -> ControlOutcome {
        .data(replyBytes(status, id: id, size: size, result: result))
    }

    private func replyBytes(_ status: ReplyStatus, id: UInt16? = nil, size: UInt32? = nil, result: Int32? = nil) -> [UInt8] {
        var flags = Flag.status
        if id != nil { flags |= Flag.id }
        if size != nil { flags |= Flag.size }
        if result != nil { flags |= Flag.result }
        var out = le32Bytes(flags) + le16Bytes(status.rawValue)
        if let id { out += le16Bytes(id) }
        if let size { out += le32Bytes(size) }
        if let result { out += le32Bytes(UInt32(bitPattern: result)) }
        return out
    }
}

/// USB descriptors of a simulated device in each mode (dfu-protocol.md §2.3, device-os-keys.md §3).
struct SimulatedDescriptors: Sendable {
    var device: [UInt8]
    var configuration: [UInt8]
    var strings: [UInt8: String]

    static let altStringBase: UInt8 = 6
    static let deviceStateStringIndex: UInt8 = 0xFA

    static func dfu(platform: Platform, hardware: SimulatedHardware, deviceID: String, layoutStrings: [String],
                    isProtected: Bool) -> SimulatedDescriptors {
        let device = USBDeviceDescriptor(vendorID: platform.vendorID, productID: platform.dfuProductID,
                                         deviceVersion: hardware.dfuDeviceVersion)
        let interfaces = layoutStrings.indices.map { i in
            USBInterfaceDescriptor(interfaceNumber: 0, alternateSetting: UInt8(i), interfaceClass: 0xFE, interfaceSubClass: 0x01,
                                   interfaceProtocol: 0x02, stringIndex: altStringBase + UInt8(i))
        }
        let configuration = USBConfiguration(configurationValue: 1, attributes: 0xC0, maxPowerUnits: 50, stringIndex: 4,
                                             interfaces: interfaces, dfuFunctional: .particle)
        var strings: [UInt8: String] = [1: "Particle", 2: "\(platform.displayName) DFU Mode", 3: deviceID.lowercased(), 4: "DFU", 5: "DFU"]
        for (i, s) in layoutStrings.enumerated() { strings[altStringBase + UInt8(i)] = s }
        if hardware.bootloader == .particleGen3 {
            // STRING_IDX_DEVICE_STATE: sm=o open, sm=p protected (device-os-keys.md §2).
            strings[deviceStateStringIndex] = isProtected ? "sm=p" : "sm=o"
        }
        return SimulatedDescriptors(device: device.bytes, configuration: configuration.bytes, strings: strings)
    }

    /// Normal mode: a CDC ACM serial port (IAD composite) plus the vendor control interface.
    static func normal(platform: Platform, deviceID: String) -> SimulatedDescriptors {
        let device = USBDeviceDescriptor(deviceClass: 0xEF, deviceSubClass: 0x02, deviceProtocol: 0x01,
                                         vendorID: platform.vendorID, productID: platform.normalProductID, deviceVersion: 0x0250)
        func interface(_ number: UInt8, endpoints: UInt8, _ cls: UInt8, _ sub: UInt8, _ proto: UInt8, string: UInt8 = 0) -> [UInt8] {
            [9, 4, number, 0, endpoints, cls, sub, proto, string]
        }
        func endpoint(_ address: UInt8, _ attributes: UInt8, _ maxPacket: UInt16, _ interval: UInt8) -> [UInt8] {
            [7, 5, address, attributes] + le16Bytes(maxPacket) + [interval]
        }
        let iad: [UInt8] = [8, 0x0B, 0, 2, 0x02, 0x02, 0x01, 0]
        let body = iad
            + interface(0, endpoints: 1, 0x02, 0x02, 0x01) + endpoint(0x82, 0x03, 8, 255)
            + interface(1, endpoints: 2, 0x0A, 0x00, 0x00) + endpoint(0x01, 0x02, 64, 0) + endpoint(0x81, 0x02, 64, 0)
            + interface(2, endpoints: 0, 0xFF, 0xFF, 0xFF, string: 4)
        let configuration: [UInt8] = [9, 2] + le16Bytes(UInt16(9 + body.count)) + [3, 1, 0, 0xC0, 50] + body
        return SimulatedDescriptors(device: device.bytes, configuration: configuration,
                                    strings: [1: "Particle", 2: platform.displayName, 3: deviceID.lowercased(), 4: "Control Interface"])
    }

    /// A standard request (type 0): GET_DESCRIPTOR, GET/SET_CONFIGURATION; anything else stalls.
    func handleStandard(_ setup: ControlSetup) -> ControlOutcome {
        switch setup.request {
        case 6 where setup.isDeviceToHost:
            let type = UInt8(setup.value >> 8), index = UInt8(setup.value & 0xFF)
            let length = Int(setup.length)
            switch type {
            case USBDescriptorType.device.rawValue:
                return .data(Array(device.prefix(length)))
            case USBDescriptorType.configuration.rawValue where index == 0:
                return .data(Array(configuration.prefix(length)))
            case USBDescriptorType.dfuFunctional.rawValue where configuration.count >= 9 && configuration[configuration.count - 8] == 0x21:
                // Both bootloaders answer GET_DESCRIPTOR(0x21) with the functional descriptor (dfu-util's fallback).
                return .data(Array(configuration.suffix(9).prefix(length)))
            case USBDescriptorType.string.rawValue:
                if index == 0 { return .data(Array(USBStringDescriptor.encodeLanguages().prefix(length))) }
                guard let string = strings[index] else { return .stall }
                return .data(Array(USBStringDescriptor.encode(string).prefix(length)))
            default:
                return .stall
            }
        case 8 where setup.isDeviceToHost:
            return .data([1])
        case 9 where !setup.isDeviceToHost:
            return .ok
        default:
            return .stall
        }
    }
}

@inline(__always) func le16Bytes(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }
@inline(__always) func le32Bytes(_ v: UInt32) -> [UInt8] {
    [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 24)]
}
