import DeviceKeys
import FailurePolicy
import Registry

/// `keyline keys send`: a device's public key registered for a product outside any job. Only a
/// key whose backup is recorded is registered (the line's rule: no registration without an escrow
/// object); an active key of the device is replaced only when asked to (`supersede`), recorded as
/// a `key.superseded` event; a key registered to another device is refused by the registry.
public struct BenchKeyRegistration: Sendable {
    public let registry: RegistryDatabase
    public let station: String

    public init(registry: RegistryDatabase, station: String) {
        self.registry = registry
        self.station = station
    }

    /// The recorded escrow object backing this key of the device in the product, if any.
    public func recordedBackup(of key: DevicePublicKey, deviceID: String, product: String) async throws -> EscrowObject? {
        try await registry.escrowObjects(deviceID: deviceID).last {
            $0.productID == product && $0.publicKeySHA256 == key.fingerprint
        }
    }

    /// Registers `key` for the device; `backup` is the recorded escrow object of exactly that key.
    public func register(_ key: DevicePublicKey, deviceID: String, product: String, backup: EscrowObject?,
                         supersede: Bool, reason: String,
                         doctorIntent: Int64? = nil) async throws -> (registered: KeyRegistration, superseded: KeyRegistration?) {
        guard let backup, backup.productID == product, backup.deviceID == deviceID,
              backup.publicKeySHA256 == key.fingerprint else {
            throw BenchKeyError.noBackup(deviceID: deviceID, product: product, fingerprint: key.fingerprint)
        }
        var registration = NewKeyRegistration(
            productID: product, deviceID: deviceID, algorithm: key.algorithm == .rsa ? .rsa : .ec,
            spkiDER: key.spkiDER, fingerprint: key.fingerprint, escrowObjectID: backup.id, jobID: nil, station: station)
        // The cloud must learn every key the bench registers: queued in the same transaction.
        registration.queueCloudUpload = true
        return try await registry.registerKey(registration, superseding: supersede, reason: reason, doctorIntent: doctorIntent)
    }

    /// Refuses a key registered to another device, before anything is escrowed for this one.
    public func requireUnclaimed(_ key: DevicePublicKey, deviceID: String) async throws {
        if let existing = try await registry.registration(fingerprint: key.fingerprint), existing.deviceID != deviceID {
            throw RegistryError.fingerprintConflict(fingerprint: key.fingerprint, attemptedDeviceID: deviceID,
                                                    registeredDeviceID: existing.deviceID,
                                                    registeredProductID: existing.productID)
        }
    }

    /// The product to use for the device: `product` when given, else the one product it has an
    /// active key in.
    public func product(for deviceID: String, given product: String?) async throws -> String {
        if let product { return product }
        let active = try await registry.activeRegistrations(deviceID: deviceID)
        guard active.count == 1 else {
            throw BenchKeyError.productNeeded(deviceID: deviceID, activeIn: active.map(\.productID))
        }
        return active[0].productID
    }
}

/// Why a bench key command refused.
public enum BenchKeyError: Error, Sendable, Hashable, CustomStringConvertible, ClassifiedError {
    /// No escrow object is recorded for this key: the registry registers no key without a backup.
    case noBackup(deviceID: String, product: String, fingerprint: String)
    /// No --product, and the device has no single active registration to take it from.
    case productNeeded(deviceID: String, activeIn: [String])
    /// The key is not the kind the device's platform uses (particle-cli issue #582: an EC key
    /// registered for a TCP device, whose handshake then fails).
    case wrongAlgorithm(deviceID: String, platform: String, detail: String)

    public var description: String {
        switch self {
        case .noBackup(let id, let product, let fingerprint):
            "no escrow backup of key \(fingerprint) is recorded for device \(id) in product \(product); a key is "
                + "registered only with a backup: give the private key file (with --store and --recipients-file) "
                + "so keyline escrows it first, or use `keyline keys doctor`"
        case .productNeeded(let id, let products):
            "device \(id) "
                + (products.isEmpty ? "has no active key in any product" : "has active keys in several products (\(products.joined(separator: ", ")))")
                + "; name the product with --product"
        case .wrongAlgorithm(let id, let platform, let detail):
            "device \(id) is a \(platform): \(detail); refusing to register a key the device cannot use"
        }
    }

    public var failureClass: FailureClass { .badInput }
}
