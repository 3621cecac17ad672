import FailurePolicy

/// Why a restore refused or failed. Every refusal is decided before anything is written to the
/// device; messages name the device and what to do, never key bytes.
public enum RestoreError: Error, Sendable, Hashable, CustomStringConvertible, ClassifiedError {
    /// The registry has no active registration for the device (in the product, if one was named).
    case noRegistration(deviceID: String, productID: String?)
    /// The device is registered in several products; name one.
    case severalRegistrations(deviceID: String, products: [String])
    /// The escrow object is not in the store, or its bytes differ from the recorded SHA-256.
    case backupUnavailable(deviceID: String, objectKey: String, detail: String)
    /// The identity does not decrypt the backup (encrypted to other recipients, or damaged).
    case cannotDecrypt(deviceID: String, objectKey: String, detail: String)
    /// The decrypted backup names another device, product or public key than the registry.
    case backupMismatch(deviceID: String, field: String, registered: String, backup: String)
    /// The attached device is another platform than the backup's.
    case platformMismatch(deviceID: String, backup: String, attached: String)
    /// Device Protection closes the DCT: the key cannot be read or written.
    case deviceProtected(deviceID: String)
    /// After the write, the slot does not hold the original key byte for byte.
    case readBackDiffers(deviceID: String)
    /// The registration was superseded or revoked while the restore ran (read again before the write).
    case registrationChanged(deviceID: String, registrationID: Int64)

    public var description: String {
        switch self {
        case .noRegistration(let id, let product):
            "device \(id) has no active key registration" + (product.map { " in product \($0)" } ?? "")
                + "; nothing to restore (was it provisioned by keyline? check `keyline db` and the product)"
        case .severalRegistrations(let id, let products):
            "device \(id) has active keys in several products (\(products.joined(separator: ", "))); choose one with --product"
        case .backupUnavailable(let id, let key, let detail):
            "the escrow backup of device \(id) (\(key)) cannot be used: \(detail); nothing was written to the device. "
                + "Find the object (store mount, replica) before restoring"
        case .cannotDecrypt(let id, let key, let detail):
            "the identity does not decrypt the escrow backup of device \(id) (\(key)): \(detail); "
                + "use the RMA identity the line escrows to. Nothing was written to the device"
        case .backupMismatch(let id, let field, let registered, let backup):
            "the escrow backup of device \(id) does not match the registry: \(field) is \(backup) in the backup, "
                + "\(registered) in the registry; refusing to restore it (nothing was written)"
        case .platformMismatch(let id, let backup, let attached):
            "device \(id) is attached as a \(attached), but its escrowed key is for a \(backup); refusing to restore "
                + "(nothing was written)"
        case .deviceProtected(let id):
            "device \(id) is protected (Device Protection): its key slot cannot be read or written; "
                + "put it into service mode, then run again. Nothing was written"
        case .readBackDiffers(let id):
            "device \(id): the key slot read back after the restore differs from the escrowed key; "
                + "the device is left in DFU mode — run the restore again"
        case .registrationChanged(let id, let registration):
            "the registration \(registration) of device \(id) was superseded or revoked while the restore ran; "
                + "its key is no longer the one the cloud trusts, so it was not written back (nothing was written). "
                + "Check the device's registrations before running again"
        }
    }

    public var failureClass: FailureClass {
        switch self {
        case .severalRegistrations: .badInput
        case .backupUnavailable, .registrationChanged: .needsOperator
        case .noRegistration, .cannotDecrypt, .backupMismatch: .badInput
        case .platformMismatch, .deviceProtected, .readBackDiffers: .badDevice
        }
    }

    /// A stable identifier for scripts and the registry's records.
    public var kind: String {
        switch self {
        case .noRegistration: "noRegistration"
        case .severalRegistrations: "severalRegistrations"
        case .backupUnavailable: "backupUnavailable"
        case .cannotDecrypt: "cannotDecrypt"
        case .backupMismatch: "backupMismatch"
        case .platformMismatch: "platformMismatch"
        case .deviceProtected: "deviceProtected"
        case .readBackDiffers: "readBackDiffers"
        case .registrationChanged: "registrationChanged"
        }
    }
}
