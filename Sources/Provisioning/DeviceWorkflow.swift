import DeviceBus
import ParticlePlatform
import DeviceKeys
import Escrow
import FailurePolicy
import Foundation
import ParticleDevice
import Registry

/// What every device task of a run shares.
struct ProvisioningContext: Sendable {
    let definition: PipelineDefinition
    let jobID: Int64
    let registry: RegistryDatabase
    let store: any EscrowStore
    let watcher: DeviceBusWatcher
    let stop: StopSignal
    let emit: ProvisioningEventSink
    /// How long a device may take to come back after a mode switch or to be plugged back in.
    let reenumerationTimeout: Duration
    /// The station's heartbeat, told when this device starts and stops waiting for the store.
    var heartbeat: StationHeartbeat? = nil
}

/// Thrown inside a device's run when a stop was requested at a step boundary.
struct StopRequested: Error {
    /// What the device was waiting for when the stop came (the registry or the store), if anything.
    var heldBy: String?
}

/// A step that failed for good, with the error that ended it.
struct StepFailed: Error {
    let step: ProvisioningStep
    let error: any Error
    let attempts: Int
}

/// One device's provisioning: the states of design.md in order, each persisted before its side
/// effect counts, resumed from whatever state the registry holds for the device in this job.
///
/// Used by one task at a time (not Sendable on purpose): the device's handle and the key it
/// holds live here, in memory only, for the length of the run.
final class DeviceWorkflow {
    let context: ProvisioningContext
    let deviceID: String
    let platform: Platform
    var port: USBPortPath
    private let started = ContinuousClock.now
    private let startedAt = Date()

    var session: ParticleDFUDevice?
    /// The device's key, read back from the device in this run (never written anywhere but the
    /// device and, encrypted, the escrow store).
    var key: DevicePrivateKey?
    var recordedFingerprint: String?
    /// True when this run read the key and recorded `key_ready` itself: no earlier run can have
    /// left an escrow intent for it, so the escrow step need not look for one (a retry in this
    /// run puts the bytes it sealed).
    var keySettledInThisRun = false
    /// The escrow write whose intent this run recorded, until it is committed: a retried escrow
    /// step writes its bytes again rather than encrypting anew (age output is random).
    var escrowWriter: WriteAheadEscrow<JobEscrowLedger>?
    /// The escrow object committed by this run, so registering need not look it up again.
    var committedObject: EscrowObject?
    /// Each step's timing in this run, for the report (`recordStep` keeps them).
    var timings: [StepTiming] = []
    var state: DeviceWorkflowState = .detected

    var definition: PipelineDefinition { context.definition }

    init(context: ProvisioningContext, deviceID: String, platform: Platform, port: USBPortPath) {
        self.context = context
        self.deviceID = deviceID
        self.platform = platform
        self.port = port
    }

    // MARK: Running

    func run() async -> DeviceReport {
        emit(.deviceDetected, message: "\(platform.name) \(deviceID)")
        do {
            guard let row = try await identify() else { return report(.skipped, reason: skipReason) }
            state = try Self.state(row.state)
            recordedFingerprint = row.keyFingerprint
            while let step = ProvisioningStep(leaving: state) {
                try await perform(step)
            }
            await closeSession()
            emit(.deviceFinished, outcome: .done, message: "done")
            return report(.done)
        } catch let stop as StopRequested {
            await closeSession()
            emit(.deviceFinished, outcome: .interrupted, message: "stopped before \(ProvisioningStep(leaving: state)?.rawValue ?? "the next step"); resume with --resume \(context.jobID)")
            if let heldBy = stop.heldBy {
                return report(.interrupted, reason: "waiting for \(heldBy)", failureClass: .needsOperator)
            }
            return report(.interrupted, reason: "stopped on request")
        } catch let failure as StepFailed {
            await closeSession()
            let reason = "\(failure.error)"
            // Recorded with the last good state, so a resume knows where to go on from.
            if state != .failed {
                let (registry, jobID, deviceID, from) = (context.registry, context.jobID, deviceID, state.rawValue)
                _ = try? await persist {
                    try await registry.failJobDevice(jobID: jobID, deviceID: deviceID, from: from, reason: reason)
                }
            }
            emit(.deviceFinished, step: failure.step, outcome: .failed, attempt: failure.attempts, message: reason,
                 failureClass: failure.error.failureClass)
            return report(.failed, reason: reason, failureClass: failure.error.failureClass, step: failure.step)
        } catch {
            await closeSession()
            emit(.deviceFinished, outcome: .failed, message: "\(error)", failureClass: error.failureClass)
            return report(.failed, reason: "\(error)", failureClass: error.failureClass, step: .identify)
        }
    }

    private var skipReason: String?

    /// Records the device in the job (or finds its record from an earlier run of the job).
    /// Returns nil when it must not be provisioned here (already provisioned, or unfinished in
    /// another job), with `skipReason` saying why.
    private func identify() async throws -> JobDevice? {
        let (registry, jobID, deviceID, product) = (context.registry, context.jobID, deviceID, definition.product.id)
        let (platformName, station, portPath) = (platform.name, definition.station, port.description)
        let records = try await persist { try await registry.deviceRecords(deviceID: deviceID) }
        // Every product, not only this pipeline's: a device with an active key in another product
        // belongs to that product's fleet, and re-flashing it would strand the key its cloud trusts.
        let active = try await persist { try await registry.activeRegistrations(deviceID: deviceID) }
        if let elsewhere = active.first(where: { $0.productID != product }) {
            throw StepFailed(step: .identify, error: ProvisioningError.activeInAnotherProduct(
                deviceID: deviceID, product: elsewhere.productID, fingerprint: elsewhere.fingerprint, pipelineProduct: product),
                attempts: 1)
        }
        // A key registered by another job (before this one, or meanwhile by another station):
        // this device is provisioned; nothing here may touch it.
        if let registered = active.first(where: { $0.productID == product }), registered.jobID != jobID {
            skipReason = "already provisioned: key \(registered.fingerprint) registered" + (registered.jobID.map { " by job \($0)" } ?? "")
            emit(.note, message: skipReason)
            return nil
        }
        // An abandoned record (`keyline job abandon`) holds nobody up.
        if !records.contains(where: { $0.jobID == jobID }),
           let other = records.first(where: { $0.jobID != jobID && $0.isUnfinished && Self.holdsAKey($0) }) {
            throw StepFailed(step: .identify, error: ProvisioningError.unfinishedElsewhere(
                deviceID: deviceID, jobID: other.jobID, state: other.lastGoodState ?? other.state), attempts: 1)
        }
        var row = try await persist {
            try await registry.startJobDevice(jobID: jobID, deviceID: deviceID, platform: platformName,
                                              station: station, portPath: portPath)
        }
        if row.state == DeviceWorkflowState.done.rawValue {
            skipReason = "already done in job \(context.jobID)"
            return nil
        }
        if let reason = row.abandonReason {
            skipReason = "abandoned in job \(jobID) by an operator (\(reason)): not touched; "
                + "`keyline job reopen \(jobID) \(deviceID) --reason …` takes it back"
            emit(.note, message: skipReason)
            return nil
        }
        if row.state == DeviceWorkflowState.failed.rawValue {
            row = try await persist { try await registry.resumeJobDevice(jobID: jobID, deviceID: deviceID) }
            emit(.note, state: try Self.state(row.state), attempt: row.attempts,
                 message: "resuming from \(row.state) (attempt \(row.attempts))")
        } else if row.state != DeviceWorkflowState.detected.rawValue {
            emit(.note, state: try Self.state(row.state), message: "resuming from \(row.state)")
        }
        return row
    }

    /// A record in another job past `key_ready`: that job holds an escrow intent or object for
    /// the device's key, and only resuming it finishes the key's escrow without a conflict.
    private static func holdsAKey(_ record: JobDevice) -> Bool {
        let state = DeviceWorkflowState(rawValue: record.lastGoodState ?? record.state) ?? .detected
        return state.hasKey
    }

    // MARK: Persisting

    /// Moves the device's persisted state one step forward. A reply lost with the connection
    /// (the server committed, the client never heard) shows up on the retry as a state conflict
    /// whose actual state is the target: that is success.
    func advance(to next: DeviceWorkflowState, fingerprint: String? = nil) async throws {
        let registry = context.registry
        let (jobID, deviceID, from, portPath) = (context.jobID, self.deviceID, state, port.description)
        _ = try await persist {
            do {
                return try await registry.advanceJobDevice(jobID: jobID, deviceID: deviceID, from: from.rawValue,
                                                           to: next.rawValue, keyFingerprint: fingerprint, portPath: portPath)
            } catch let error as RegistryError {
                if case .stateConflict = error,
                   let row = try await registry.jobDevice(jobID: jobID, deviceID: deviceID), row.state == next.rawValue {
                    return row
                }
                throw error
            }
        }
        state = next
        emit(.stateChanged, step: ProvisioningStep(leaving: from), state: next, fingerprint: fingerprint)
    }

    /// Runs a registry call until it succeeds while the database is away: devices are held, not
    /// failed, and finish when it returns. Errors that are not about reaching the database
    /// (conflicts, refusals) are thrown at once.
    func persist<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        var attempt = 1
        var held = false
        while true {
            do {
                let value = try await body()
                if held { emit(.note, message: "the registry is back; going on") }
                return value
            } catch {
                let failureClass = error.failureClass
                guard failureClass == .retryable || failureClass == .needsOperator else { throw error }
                if !held && (failureClass == .needsOperator || attempt >= 3) {
                    held = true
                    emit(.held, message: "waiting for the registry: \(error)", failureClass: failureClass)
                }
                if await context.stop.sleep(for: definition.retries.backoff(beforeAttempt: attempt + 1)) {
                    throw StopRequested(heldBy: held ? "the registry: \(error)" : nil)
                }
                attempt += 1
            }
        }
    }

    // MARK: Events and reports

    func emit(_ type: ProvisioningEvent.Kind, step: ProvisioningStep? = nil, state: DeviceWorkflowState? = nil,
                      outcome: DeviceOutcome? = nil, attempt: Int? = nil, message: String? = nil,
                      failureClass: FailureClass? = nil, fingerprint: String? = nil) {
        context.emit(ProvisioningEvent(type: type, jobID: context.jobID, port: port.description, deviceID: deviceID,
                                       platform: platform.name, step: step, state: state, outcome: outcome, attempt: attempt,
                                       elapsed: Self.seconds(ContinuousClock.now - started), message: message,
                                       failureClass: failureClass?.rawValue, fingerprint: fingerprint))
    }

    private func report(_ outcome: DeviceOutcome, reason: String? = nil, failureClass: FailureClass? = nil,
                        step: ProvisioningStep? = nil) -> DeviceReport {
        DeviceReport(port: port.description, deviceID: deviceID, platform: platform.name, outcome: outcome,
                     state: state, fingerprint: key?.publicKey.fingerprint ?? recordedFingerprint, reason: reason,
                     failureClass: failureClass?.rawValue, failedStep: step, steps: timings,
                     seconds: Self.seconds(ContinuousClock.now - started))
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    static func state(_ raw: String) throws -> DeviceWorkflowState {
        guard let state = DeviceWorkflowState(rawValue: raw) else {
            throw ProvisioningError.unknownState(raw)
        }
        return state
    }
}
