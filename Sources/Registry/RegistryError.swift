/// Registry operations' errors: conflicts and refusals named in terms of devices and keys, or the
/// underlying database error.
public enum RegistryError: Error, Sendable, CustomStringConvertible {
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
    case notEscrowed(jobID: Int64, deviceID: String, state: JobDeviceState?)
    /// The device has no active key to supersede, revoke or restore.
    case noActiveKey(productID: String, deviceID: String)
    case productExists(String)
    case unknownProduct(String)
    case unknownJob(Int64)
    case unknownRegistration(Int64)
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
            "device \(device) in job \(job) is \(state.map { "in state \($0.rawValue)" } ?? "not in the job"), "
                + "not escrowed; a key is registered only after its escrow object is recorded"
        case .noActiveKey(let product, let device):
            "device \(device) has no active key in product \(product)"
        case .productExists(let product):
            "product \(product) already exists"
        case .unknownProduct(let product):
            "product \(product) does not exist; create it first"
        case .unknownJob(let job):
            "job \(job) does not exist"
        case .unknownRegistration(let id):
            "key registration \(id) does not exist"
        case .permissionDenied(let action, let error):
            "the database login may not \(action): \(error.message); use a login with the right keyline role "
                + "(keyline_station, keyline_rma or keyline_auditor)"
        case .database(let error):
            error.description
        }
    }
}
