import DeviceKeys
import Dispatch
import Foundation

/// Device OS's cloud connection status (device-os-protobuf control/cloud.proto `ConnectionStatus`),
/// what control request 300 answers and what the RGB LED shows: CONNECTED breathes cyan; a device
/// whose handshake the cloud refuses keeps CONNECTING, blinking cyan (the seeds' "Device Blinking Cyan").
public enum SimulatedCloudStatus: UInt8, Sendable, Codable {
    case disconnected = 0, connecting = 1, connected = 2, disconnecting = 3
}

/// Where a simulated device's application connects (`keyline-sim serve --cloud URL`), and where its
/// outcome is logged.
public struct SimulatedCloudLink: Sendable {
    public var client: SimulatedCloudClient
    /// After a refused or unanswered handshake the device tries again this much modelled time
    /// later (an assumption; Device OS backs off between attempts).
    public var retryInterval: Duration
    public var log: @Sendable (String) -> Void

    public init(client: SimulatedCloudClient, retryInterval: Duration = .seconds(10), log: @escaping @Sendable (String) -> Void) {
        self.client = client
        self.retryInterval = retryInterval
        self.log = log
    }
}

/// The handshake outcome of one session (one enumeration of the application).
struct DeviceCloudState: Sendable {
    var session: UInt64 = 0
    var status = SimulatedCloudStatus.disconnected
    /// What was last logged for this session, so a retry that ends the same way stays quiet.
    var lastOutcome: String?
}

extension SimulatedDevice {
    /// The cloud connection status now (DISCONNECTED in DFU mode, off the bus, or before the
    /// application made its connection).
    public var cloudStatus: SimulatedCloudStatus { lock.withLock { cloudStatusLocked() } }

    func cloudStatusLocked() -> SimulatedCloudStatus {
        attached && mode == .normal && cloud.session == session ? cloud.status : .disconnected
    }

    /// The application's cloud handshake for `session`: the public key derived from what the
    /// slot holds, presented to the simulated cloud. Without a cloud link every connection succeeds.
    func startCloudHandshake(session: UInt64) {
        let link = lock.withLock { () -> SimulatedCloudLink? in
            guard self.session == session else { return nil }
            if cloud.session != session { cloud = DeviceCloudState(session: session) }
            cloud.status = cloudLink == nil ? .connected : .connecting
            return cloudLink
        }
        guard let link else { return }
        let slot = privateKeySlot()
        guard let key = try? DevicePrivateKey(slot: slot) else {
            finishCloudHandshake(.keyMismatch("its key slot holds no valid key"), session: session, link: link)
            return
        }
        let deviceID = self.deviceID
        Task {
            let outcome = await link.client.handshake(deviceID: deviceID, publicKey: key.publicKey)
            self.queue.async { self.finishCloudHandshake(outcome, session: session, link: link) }
        }
    }

    private func finishCloudHandshake(_ outcome: SimulatedCloudClient.Handshake, session: UInt64, link: SimulatedCloudLink) {
        let text: String
        switch outcome {
        case .online: text = "online (breathing cyan)"
        case .keyMismatch(let reason): text = "key mismatch (blinking cyan): \(reason)"
        case .unreachable(let reason): text = "cloud unreachable (blinking cyan): \(reason)"
        }
        let (current, changed) = lock.withLock { () -> (Bool, Bool) in
            guard attached, mode == .normal, self.session == session, cloud.session == session else { return (false, false) }
            cloud.status = outcome == .online ? .connected : .connecting
            defer { cloud.lastOutcome = text }
            return (true, cloud.lastOutcome != text)
        }
        guard current else { return }
        if changed { link.log("cloud \(platform.name) \(deviceID): \(text)") }
        guard outcome != .online else { return }
        let factor = lock.withLock { timeScale * faults.slowdown }
        // At least 50 ms real time between attempts, so a time scale of 0 does not spin.
        queue.asyncAfter(deadline: max(deadline(after: link.retryInterval, factor: factor), .now() + 0.05)) {
            let again = self.lock.withLock { self.attached && self.mode == .normal && self.session == session }
            if again { self.startCloudHandshake(session: session) }
        }
    }
}
