import DeviceBus
import HexEncoding

/// Device OS USB control requests a normal-mode device answers (device-os-keys.md §4):
/// raw 'P' requests (bRequest 0x50) and the service-request framing (INIT/CHECK/SEND/RECV/RESET)
/// that carries protobuf requests such as DFU_MODE (50).
public struct ParticleControlRequests: Sendable {
    public let transport: any ControlTransport
    public var timeout: Duration

    public init(transport: any ControlTransport, timeout: Duration = .seconds(5)) {
        self.transport = transport
        self.timeout = timeout
    }

    /// Request type IDs (system_control.h).
    public enum RequestType: UInt16, Sendable {
        case deviceID = 20
        case systemVersion = 30
        case reset = 40
        case dfuMode = 50
        /// CTRL_REQUEST_CLOUD_GET_CONNECTION_STATUS (ParticleControlRequests+Cloud.swift).
        case cloudConnectionStatus = 300
    }

    /// A reply of the service-request framing: flags, status and the optional id/size/result.
    struct ServiceReply {
        var status: UInt16
        var id: UInt16?
        var size: UInt32?
        var result: Int32?

        init?(_ b: [UInt8]) {
            guard b.count >= 6 else { return nil }
            let flags = UInt32(b[0]) | UInt32(b[1]) << 8 | UInt32(b[2]) << 16 | UInt32(b[3]) << 24
            status = UInt16(b[4]) | UInt16(b[5]) << 8
            var i = 6
            if flags & 2 != 0 {
                guard b.count >= i + 2 else { return nil }
                id = UInt16(b[i]) | UInt16(b[i + 1]) << 8
                i += 2
            }
            if flags & 4 != 0 {
                guard b.count >= i + 4 else { return nil }
                size = UInt32(b[i]) | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 3]) << 24
                i += 4
            }
            if flags & 8 != 0 {
                guard b.count >= i + 4 else { return nil }
                result = Int32(bitPattern: UInt32(b[i]) | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 3]) << 24)
            }
        }
    }

    /// The device ID by raw request 20 (uppercase hex on the wire; returned lowercase).
    public func deviceID() async throws(ParticleDeviceError) -> String {
        let setup = ControlSetup(requestType: 0xC0, request: 0x50, value: 0, index: RequestType.deviceID.rawValue, length: 64)
        let reply = try await control(setup, step: .readDeviceID)
        let text = String(decoding: reply.prefix(while: { $0 != 0 }), as: UTF8.self).lowercased()
        guard text.count == 24, text.allSatisfy(\.isHexDigit) else {
            throw ParticleDeviceError(step: .readDeviceID, reason: .unexpectedReply("device ID reply \"\(text)\" is not 24 hex digits"))
        }
        return text
    }

    /// Sends a service request with no payload and waits for its result; returns the reply payload.
    /// Polls CHECK every 50 ms up to `timeout`.
    public func send(_ type: RequestType, step: ParticleDeviceError.Step) async throws(ParticleDeviceError) -> [UInt8] {
        let initReply = try await control(ControlSetup(requestType: 0xC0, request: 1, value: 0, index: type.rawValue, length: 64), step: step)
        guard let started = ServiceReply(initReply), started.status == 0, let id = started.id else {
            throw ParticleDeviceError(step: step, reason: .unexpectedReply("INIT for request \(type.rawValue) was refused (\(Hex.dump(Array(initReply.prefix(24)), limit: 24)))"))
        }
        let deadline = ContinuousClock.now + timeout
        while true {
            let checkReply = try await control(ControlSetup(requestType: 0xC0, request: 2, value: 0, index: id, length: 64), step: step)
            guard let check = ServiceReply(checkReply) else {
                throw ParticleDeviceError(step: step, reason: .unexpectedReply("CHECK reply \(Hex.dump(Array(checkReply.prefix(24)), limit: 24)) is malformed"))
            }
            switch check.status {
            case 0:
                if let result = check.result, result != 0 {
                    throw ParticleDeviceError(step: step, reason: .requestFailed(request: type.rawValue, result: result))
                }
                guard let size = check.size, size > 0 else { return [] }
                return try await control(ControlSetup(requestType: 0xC0, request: 4, value: 0, index: id, length: UInt16(clamping: size)), step: step)
            case 2, 3:  // PENDING, BUSY
                guard ContinuousClock.now < deadline else {
                    throw ParticleDeviceError(step: step, reason: .unexpectedReply("request \(type.rawValue) still pending after \(timeout)"))
                }
                // A cancelled task stops polling instead of waiting out the timeout.
                do { try await Task.sleep(for: .milliseconds(50)) } catch {
                    throw ParticleDeviceError(step: step, reason: .transfer(.cancelled))
                }
            default:
                throw ParticleDeviceError(step: step, reason: .unexpectedReply("CHECK for request \(type.rawValue) returned status \(check.status)"))
            }
        }
    }

    /// DFU_MODE (50): the device answers, then resets into its DFU bootloader.
    public func enterDFUMode() async throws(ParticleDeviceError) {
        _ = try await send(.dfuMode, step: .enterDFU)
    }

    private func control(_ setup: ControlSetup, step: ParticleDeviceError.Step) async throws(ParticleDeviceError) -> [UInt8] {
        do {
            return try await transport.control(setup, data: [], timeout: timeout)
        } catch {
            throw ParticleDeviceError(step: step, reason: .transfer(error))
        }
    }
}

