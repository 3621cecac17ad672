import FailurePolicy

/// Registry operations' errors: conflicts and refusals named in terms of devices and keys, or the
/// underlying database error.
public enum RegistryError: Error, Sendable, CustomStringConvertible, ClassifiedError {
    /// The device already has an active key in this product (at most one is allowed).
    case activeKeyConflict(productID: String, deviceID: String, activeFingerprint: String?, attemptedFingerprint: String)
    /// This public key is already registered (to this device or another one).
    case fingerprintConflict(fingerprint: String, attemptedDeviceID: String, registeredDeviceID: String?,
                             registeredProductID: String?)
    /// The escrow object does not exist or belongs to another product, device or public key.
    case escrowObjectMismatch(escrowObjectID: Int64, productID: String, deviceID: String, fingerprint: String)
    /// An escrow object with the same store and object key is already recorded (objects are write-once).
    case escrowObjectExists(storeURI: String, objectKey: String)
    /// Registration requires the job device to be in `escrowed` (its backup committed first).
    case notEscrowed(jobID: Int64, deviceID: String, state: String?)
    /// The job device was not in `expected` (nil `actual`: not in the job): another task or station
    /// moved it first, or the move is a replay. Nothing was changed.
    case stateConflict(jobID: Int64, deviceID: String, expected: String, actual: String?)
    /// The workflow has no such move (states go one step forward, to failed, or back from failed).
    case invalidTransition(jobID: Int64, deviceID: String, from: String, to: String)
    /// Reaching `key_ready` records the fingerprint of the key read back from the device.
    case keyFingerprintRequired(jobID: Int64, deviceID: String)
    /// The device was recorded holding another key than the one named now.
    case keyFingerprintMismatch(jobID: Int64, deviceID: String, recorded: String?, attempted: String)
    /// Write-ahead escrow needs the job the device is in.
    case escrowIntentWithoutJob(deviceID: String)
    /// No escrow intent is recorded for the device in this job: nothing to commit.
    case noEscrowIntent(jobID: Int64, deviceID: String)
    /// The device's escrow intent is committed; it can no longer be replaced by another object.
    case escrowIntentCommitted(jobID: Int64, deviceID: String, objectKey: String)
    /// A `keys doctor` on this device was interrupted and is still open.
    case keyDoctorInterrupted(deviceID: String)
    /// No pending bench escrow intent names this object: nothing to commit.
    case noBenchEscrowIntent(storeURI: String, objectKey: String)
    /// The device has no active key to supersede, revoke or restore.
    case noActiveKey(productID: String, deviceID: String)
    /// The registration is no longer active (superseded or revoked meanwhile): its key is not
    /// recorded restored (0011 re-reads it in the recording transaction).
    case registrationNotActive(registrationID: Int64, status: String?)
    case productExists(String)
    case unknownProduct(String)
    case unknownJob(Int64)
    case unknownRegistration(Int64)
    /// The registry's schema is older than this keyline needs (`keyline db migrate`).
    case schemaBehind(have: Int?, need: Int)
    /// The database login lacks the privilege (the registry roles are keyline_station, keyline_rma, keyline_auditor).
    case permissionDenied(action: String, PostgresError)
    /// Any other database error, with SQLSTATE and the server's message.
    case database(PostgresError)

    public var description: String {
        switch self {
        case .activeKeyConflict(let product, let device, let active, let attempted):
            "device \(device) already has an active key in product \(product)"
                + (active.map { " (fingerprint \($0))" } ?? "")
                + "; refusing to register key \(attempted). Supersede or revoke the active key first "
                + "(RMA), or check whether this device was provisioned twice"
        case .fingerprintConflict(let fingerprint, let attempted, let registered, let product):
            "public key \(fingerprint) is already registered"
                + (registered.map { " to device \($0)" } ?? "") + (product.map { " in product \($0)" } ?? "")
                + "; refusing to register it for device \(attempted). Two devices must never share a key: "
                + "generate a new key for \(attempted)"
        case .escrowObjectMismatch(let id, let product, let device, let fingerprint):
            "escrow object \(id) is not the backup of key \(fingerprint) for device \(device) in product \(product); "
                + "register a key only with the escrow object recorded for it"
        case .escrowObjectExists(let store, let key):
            "escrow object \(key) in \(store) is already recorded; objects are written once, never overwritten"
        case .notEscrowed(let job, let device, let state):
            "device \(device) in job \(job) is \(state.map { "in state \($0)" } ?? "not in the job"), "
                + "not escrowed; a key is registered only after its escrow object is recorded"
        case .stateConflict(let job, let device, let expected, let actual):
            "device \(device) in job \(job) is \(actual.map { "in state \($0)" } ?? "not in the job"), not \(expected); "
                + "another task or station moved it, or this step already ran. Nothing was changed"
        case .invalidTransition(let job, let device, let from, let to):
            "device \(device) in job \(job) cannot move from \(from) to \(to): states move one step forward, "
                + "to failed, or from failed back to the last good state"
        case .keyFingerprintRequired(let job, let device):
            "device \(device) in job \(job) reaches key_ready only with the fingerprint of the key read back from it"
        case .keyFingerprintMismatch(let job, let device, let recorded, let attempted):
            "device \(device) in job \(job) was recorded holding key \(recorded ?? "(none)"), not \(attempted); "
                + "a device's key is never silently replaced: check the device"
        case .escrowIntentWithoutJob(let device):
            "an escrow intent for device \(device) needs the job the device is in"
        case .noEscrowIntent(let job, let device):
            "no escrow intent is recorded for device \(device) in job \(job); record it before writing the object"
        case .escrowIntentCommitted(let job, let device, let key):
            "the escrow of device \(device) in job \(job) is committed as \(key); it cannot be replaced"
        case .keyDoctorInterrupted(let device):
            "an earlier `keys doctor` on device \(device) was interrupted; run `keyline keys doctor` on the device again to finish it"
        case .noBenchEscrowIntent(let store, let key):
            "no bench escrow intent is recorded for \(key) in \(store); record it before writing the object"
        case .noActiveKey(let product, let device):
            "device \(device) has no active key in product \(product)"
        case .registrationNotActive(let id, let status):
            "key registration \(id) is \(status ?? "no longer active") (superseded or revoked while the restore ran); "
                + "its key is not recorded restored: check the device and the registration's events"
        case .productExists(let product):
            "product \(product) already exists"
        case .unknownProduct(let product):
            "product \(product) does not exist; create it first"
        case .unknownJob(let job):
            "job \(job) does not exist"
        case .unknownRegistration(let id):
            "key registration \(id) does not exist"
        case .schemaBehind(let have, let need):
            "the registry's schema is at migration \(have.map(String.init) ?? "none"), this keyline needs \(need): an administrator runs `keyline db migrate` first"
        case .permissionDenied(let action, let error):
            "the database login may not \(action): \(error.message); use a login with the right keyline role "
                + "(keyline_station, keyline_rma or keyline_auditor)"
        case .database(let error):
            error.description
        }
    }
}

extension RegistryError {
    /// Conflicts are decided by committed rows, so running the same call again fails the same way:
    /// never retryable. Those about one device's key or state fail that device alone (`badDevice`:
    /// the rest of the line goes on, an operator looks at it); names that do not exist and moves
    /// the workflow does not have are the caller's input or a bug (`badInput`).
    public var failureClass: FailureClass {
        switch self {
        case .activeKeyConflict, .fingerprintConflict, .escrowObjectMismatch, .escrowObjectExists, .notEscrowed,
             .stateConflict, .keyFingerprintMismatch, .noEscrowIntent, .escrowIntentCommitted, .noBenchEscrowIntent,
             .keyDoctorInterrupted, .registrationNotActive:
            .badDevice
        case .invalidTransition, .keyFingerprintRequired, .escrowIntentWithoutJob, .noActiveKey, .productExists,
             .unknownProduct, .unknownJob, .unknownRegistration:
            .badInput
        case .permissionDenied, .schemaBehind:
            .needsOperator
        case .database(let error):
            error.failureClass
        }
    }
}
