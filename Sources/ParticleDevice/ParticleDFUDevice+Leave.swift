import DFU

// Leaving DFU mode as a station and a bench both need it: tolerant of a device already leaving.

extension ParticleDFUDevice {
    /// Asks the device to leave DFU mode; nil when it did or already was. A Gen3 bootloader asked
    /// while it manifests stalls and recovers to dfuIDLE, so one more request is made then.
    public func leaveDFU() async -> ParticleDeviceError? {
        var failure: ParticleDeviceError?
        for _ in 0..<2 {
            do {
                try await leave()
                return nil
            } catch {
                if Self.isAlreadyLeaving(error) { return nil }
                failure = error
            }
        }
        return failure
    }

    /// A device found in a manifestation state (DFU 1.1 §6.1.2) was told to leave by an earlier run.
    public static func isAlreadyLeaving(_ error: ParticleDeviceError) -> Bool {
        guard case .dfu(let dfu) = error.reason else { return false }
        switch dfu.reason {
        case .unexpectedState(let state, _): return [.manifestSync, .manifest, .manifestWaitReset].contains(state)
        default: return false
        }
    }
}
