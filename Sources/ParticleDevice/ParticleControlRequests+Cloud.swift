import DeviceBus

/// A normal-mode device's cloud connection, as Device OS reports it over USB: control request
/// 300, CTRL_REQUEST_CLOUD_GET_CONNECTION_STATUS (Device OS system/inc/system_control.h), whose
/// reply is the protobuf `particle.ctrl.cloud.GetConnectionStatusReply { ConnectionStatus status = 1; }`
/// (device-os-protobuf control/cloud.proto). particle-usb's `getCloudConnectionStatus()`
/// (src/cloud-device.js) sends the same request; Device OS answers it since 0.9.0 (Gen3) and
/// 1.1.0 (Gen2).
public enum CloudConnectionStatus: String, Sendable, Codable, CaseIterable {
    case disconnected, connecting, connected, disconnecting

    /// The proto enum's values: DISCONNECTED 0, CONNECTING 1, CONNECTED 2, DISCONNECTING 3.
    init?(protobufValue: UInt64) {
        switch protobufValue {
        case 0: self = .disconnected
        case 1: self = .connecting
        case 2: self = .connected
        case 3: self = .disconnecting
        default: return nil
        }
    }

    /// What the RGB LED shows, for an operator at the bench (Particle's device status LED guide:
    /// breathing cyan connected, blinking cyan connecting to the cloud — forever when the cloud
    /// refuses the device's key, as in the seeds' "Device Blinking Cyan").
    public var display: String {
        switch self {
        case .connected: "online (breathing cyan)"
        case .connecting: "connecting (blinking cyan)"
        case .disconnected: "offline"
        case .disconnecting: "disconnecting"
        }
    }

    /// Decodes the reply: an empty message is the proto3 default, DISCONNECTED; field 1 is a
    /// varint; unknown fields are skipped as protobuf requires.
    static func decode(_ reply: [UInt8]) -> CloudConnectionStatus? {
        var status: UInt64 = 0
        var i = 0
        func varint() -> UInt64? {
            var value: UInt64 = 0, shift: UInt64 = 0
            while i < reply.count, shift < 64 {
                let byte = reply[i]
                i += 1
                value |= UInt64(byte & 0x7F) << shift
                if byte & 0x80 == 0 { return value }
                shift += 7
            }
            return nil
        }
        while i < reply.count {
            guard let tag = varint() else { return nil }
            switch tag & 7 {
            case 0:
                guard let value = varint() else { return nil }
                if tag >> 3 == 1 { status = value }
            case 1: guard reply.count - i >= 8 else { return nil }; i += 8
            case 2:
                guard let length = varint(), length <= UInt64(reply.count - i) else { return nil }
                i += Int(length)
            case 5: guard reply.count - i >= 4 else { return nil }; i += 4
            default: return nil
            }
        }
        return CloudConnectionStatus(protobufValue: status)
    }
}

extension ParticleControlRequests {
    /// The device's cloud connection status (control request 300).
    public func cloudConnectionStatus() async throws(ParticleDeviceError) -> CloudConnectionStatus {
        let reply = try await send(.cloudConnectionStatus, step: .readCloudStatus)
        guard let status = CloudConnectionStatus.decode(reply) else {
            throw ParticleDeviceError(step: .readCloudStatus, reason: .unexpectedReply("cloud status reply \(reply.count) bytes is not a GetConnectionStatusReply"))
        }
        return status
    }
}

extension AttachedParticleDevice {
    /// Reads the cloud status of a normal-mode device over `transport` into `cloud` (left nil in
    /// DFU mode); a device that does not answer gets the reason in `cloudError`, never a failure
    /// of the whole listing.
    public mutating func readCloudStatus(over transport: any ControlTransport) async {
        guard mode == "normal" else { return }
        do {
            cloud = try await ParticleControlRequests(transport: transport, timeout: .seconds(2)).cloudConnectionStatus()
        } catch {
            cloudError = "\(error)"
        }
    }
}
