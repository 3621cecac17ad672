import DFU
import FailurePolicy
import Foundation
import Registry

/// The step loop of a device's workflow: each step run with its retry policy (back-off for what
/// is retryable, a bounded hold for what needs an operator, a wait while the escrow store is
/// away), its timing recorded, and the step bodies it dispatches to.
extension DeviceWorkflow {
    /// Holds of one step for a person before the device fails (10 × the pipeline's max back-off:
    /// 5 minutes with the shipped pipelines).
    static let holdLimit = 10

    /// Runs `step` with retries (back-off for what is retryable, a hold for what needs an
    /// operator), then persists the state it reaches.
    func perform(_ step: ProvisioningStep) async throws {
        var attempt = 1
        var holds = 0
        var storeWaits = 0
        // The heartbeat shows the store holding while this device waits for it (dashboard alarm).
        var holdingStore = false
        defer { if holdingStore { context.heartbeat?.storeReleased() } }
        while true {
            if context.stop.isStopRequested { throw StopRequested() }
            let clock = ContinuousClock.now
            let at = Date()
            emit(.stepStarted, step: step, attempt: attempt)
            do {
                try await body(of: step)
                if holdingStore {
                    holdingStore = false
                    context.heartbeat?.storeReleased()
                }
                if storeWaits > 0 { emit(.note, step: step, message: "the escrow store is back; going on") }
                await recordStep(StepTiming(step: step, started: at, seconds: Self.seconds(ContinuousClock.now - clock), attempts: attempt))
                return
            } catch let error as StopRequested {
                throw error
            } catch {
                // The device may be anywhere after a failed step (re-enumerating, reset): open it afresh.
                await closeSession()
                let failureClass = error.failureClass
                let thisTry = StepTiming(step: step, started: at, seconds: Self.seconds(ContinuousClock.now - clock), attempts: attempt)
                // The store away is waited out as the registry's outages are (`persist`): held,
                // visibly, until it returns or the run is stopped; not failed after N attempts.
                if StoreOutage.isOutage(error) {
                    if storeWaits == 0 {
                        emit(.held, step: step, attempt: attempt, message: "store unreachable, holding: \(error)",
                             failureClass: failureClass)
                    }
                    if !holdingStore {
                        holdingStore = true
                        context.heartbeat?.storeHolding(detail: "\(error)")
                    }
                    storeWaits += 1
                    await recordTry(thisTry, failure: "\(error)")
                    if await context.stop.sleep(for: definition.retries.backoff(beforeAttempt: storeWaits + 1)) {
                        throw StopRequested(heldBy: "the escrow store: \(error)")
                    }
                    continue
                }
                if holdingStore {
                    holdingStore = false
                    context.heartbeat?.storeReleased()
                }
                if failureClass == .retryable && attempt < definition.retries.attempts {
                    emit(.retrying, step: step, attempt: attempt, message: "\(error)", failureClass: failureClass)
                    await recordTry(thisTry, failure: "\(error)")
                    if await context.stop.sleep(for: definition.retries.backoff(beforeAttempt: attempt + 1)) { throw StopRequested() }
                    attempt += 1
                    continue
                }
                // Held for a person (the store's disk, USB permissions): the device waits, within a
                // bound, so a cause nobody fixes ends as a failure the summary names, not a run
                // that never ends. (The registry's own outages are waited out in `persist`.)
                if failureClass == .needsOperator && holds < Self.holdLimit {
                    holds += 1
                    emit(.held, step: step, attempt: attempt, message: "\(error)", failureClass: failureClass)
                    await recordTry(thisTry, failure: "\(error)")
                    if await context.stop.sleep(for: definition.retries.maxBackoff) { throw StopRequested(heldBy: "\(error)") }
                    continue
                }
                await recordStep(thisTry, failure: "\(error)")
                throw StepFailed(step: step, error: error, attempts: attempt)
            }
        }
    }

    /// Records a failed try of a step that is tried again, so `keyline report` draws every try, not
    /// only the last. Best effort, and never waited for: a try is history, not a state.
    private func recordTry(_ timing: StepTiming, failure: String) async {
        let record = StepRecord(jobID: context.jobID, deviceID: deviceID, step: timing.step.rawValue, startedAt: timing.started,
                                seconds: timing.seconds, attempts: timing.attempts, outcome: .failed,
                                reason: failure, portPath: port.description, station: definition.station)
        _ = try? await context.registry.recordStep(record)
    }

    /// Keeps a step's timing for the run's report and records it in the registry for
    /// `keyline report` (one INSERT). Timings are a report, not a state: when the registry refuses
    /// (a login without the grant, a registry not migrated to 0004) or the run stops while it is
    /// away, the step goes unrecorded rather than holding or failing the device.
    private func recordStep(_ timing: StepTiming, failure: String? = nil) async {
        timings.append(timing)
        let record = StepRecord(jobID: context.jobID, deviceID: deviceID, step: timing.step.rawValue, startedAt: timing.started,
                                seconds: timing.seconds, attempts: timing.attempts, outcome: failure == nil ? .done : .failed,
                                reason: failure, portPath: port.description, station: definition.station)
        let registry = context.registry
        do {
            try await registry.recordStep(record)
        } catch where error.failureClass == .retryable {
            _ = try? await persist { try await registry.recordStep(record) }  // the registry is away: wait as for a state
        } catch {
            emit(.note, step: timing.step, message: "the step's timing was not recorded: \(error)")
        }
    }

    private func body(of step: ProvisioningStep) async throws {
        switch step {
        case .identify:
            return
        case .enterDFU:
            _ = try await dfuDevice()
            try await advance(to: .dfu)
        case .flash:
            let device = try await dfuDevice()
            for image in definition.images {
                try await device.write(alt: image.alt, address: image.address, bytes: Array(image.payload), verify: true,
                                       progress: progressReporter(.flash))
            }
            try await advance(to: .flashed)
        case .serverKey:
            try await dfuDevice().writeServerKeyBlob(definition.serverKey)
            try await advance(to: .serverKey)
        case .deviceKey:
            let key = try await settleDeviceKey()
            try await advance(to: .keyReady, fingerprint: key.publicKey.fingerprint)
            recordedFingerprint = key.publicKey.fingerprint
            keySettledInThisRun = true
            emit(.note, step: .deviceKey, message: "device key \(key.publicKey.fingerprint)", fingerprint: key.publicKey.fingerprint)
        case .escrow:
            try await escrow()
        case .register:
            try await register()
        case .leave:
            try await leave()
        }
    }

    private func progressReporter(_ step: ProvisioningStep) -> DFUProgressHandler {
        let throttle = ProgressThrottle(interval: .milliseconds(250))
        let (emit, jobID, port, deviceID, platform) = (context.emit, context.jobID, port.description, deviceID, platform.name)
        return { progress in
            guard throttle.shouldReport(done: progress.bytesDone, total: progress.totalBytes) else { return }
            emit(ProvisioningEvent(type: .progress, jobID: jobID, port: port, deviceID: deviceID, platform: platform,
                                   step: step, done: progress.bytesDone, total: progress.totalBytes,
                                   message: progress.phase.rawValue))
        }
    }
}
