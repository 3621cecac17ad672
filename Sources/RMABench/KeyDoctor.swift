import LocalFiles
import DeviceKeys
import Escrow
import Foundation
import ParticlePlatform

/// What `keys doctor` did to a device.
public struct DoctorReport: Sendable, Hashable {
    public var deviceID: String
    public var platform: String
    public var product: String
    /// The new key's public half (the private half lives only in memory, the escrow and the device).
    public var publicKey: DevicePublicKey
    public var escrowObjectID: Int64
    /// What the slot held before: key, blank or corrupt.
    public var found: String
    /// The key the slot held before, when it was a valid key, and the escrow object backing it.
    public var previousFingerprint: String?
    public var previousEscrowObjectID: Int64?
    /// Set once the new key is registered.
    public var registrationID: Int64?
    public var supersededRegistrationID: Int64?
    /// Why the device did not leave DFU mode, when it did not: the key is loaded and read back all
    /// the same, and still registered, so the engineer only has to reset the device.
    public var leaveFailure: String?
    /// What the Particle cloud did with the new key (nil until registered).
    public var cloud: BenchCloudUpload.Result?
    /// The doctor intent recorded before the key was written (closed by `register`).
    public var doctorIntentID: Int64?
    /// True when this doctor finished an interrupted one: the device already held the key an
    /// earlier doctor recorded, escrowed and loaded but never registered; no new key was made.
    public var finishedInterrupted = false
}

/// `keyline keys doctor` (particle-cli-keys.md §1): a new key for the device, in this order —
/// generated in memory, escrowed (object written once and recorded with a `key.escrowed` event),
/// the doctor's intent recorded (which key replaces which), loaded into the slot with a guarded
/// write and read back, the device leaves DFU, then the key is registered, superseding the
/// device's active key (a `key.superseded` event), closing the intent — so an engineer
/// fixing one device at a bench leaves the same records as the line. The key the slot held
/// before, if valid, is escrowed first (no key is ever lost). Unlike particle-cli no private key
/// file is written: the key exists only in memory, the escrow and the device.
public struct KeyDoctor: Sendable {
    public let devices: BenchDevices
    public let escrow: BenchEscrow
    public let registration: BenchKeyRegistration

    public init(devices: BenchDevices, escrow: BenchEscrow) {
        self.devices = devices
        self.escrow = escrow
        self.registration = BenchKeyRegistration(registry: escrow.registry, station: escrow.station)
    }

    /// The whole doctor on `deviceID` (default: the only device attached): the product (`product`,
    /// else the one the device has an active key in), then `rekey`, the new public key written to
    /// `files` as DEVICE_ID_<alg>_new.pub.pem (so `keys send` can finish a failed registration),
    /// then `register`. That file is checked before anything is escrowed or written.
    public static func run(deviceID: String?, product: String?, escrow settings: BenchEscrowSettings, bus: BenchBus,
                           files: any BenchOutputFiles) async throws -> (report: DoctorReport, file: String) {
        guard let (id, platform) = try await bus.chooseAttached(deviceID) else { throw BenchError.noDevices }
        let publicFile = KeyFileNames.doctorPublicKey(deviceID: id, platform: platform)
        try await offPool { try files.requireWritable(publicFile) }
        let station = settings.bench
        let registry = try await station.registry(action: "re-key devices")
        let escrow = try await offPool { try settings.escrow(registry, station: station.name) }
        let doctor = KeyDoctor(devices: await bus.devices(), escrow: escrow)
        defer { doctor.devices.stop() }
        let productID = try await doctor.registration.product(for: id, given: product)
        let (rekeyed, key) = try await doctor.rekey(deviceID: id, product: productID)
        try await offPool { try files.write(publicFile, Array(key.pem.utf8), secret: false) }
        var report = try await doctor.register(rekeyed)
        // After escrow and registration, as the outbox orders it: the new key goes to the cloud.
        if let registration = try await registry.registration(fingerprint: report.publicKey.fingerprint) {
            report.cloud = try await BenchCloudUpload.send(registration, registry: registry, station: station.name)
        }
        return (report, publicFile)
    }

    /// New key, escrow, load, read back, leave DFU. `register(_:)` finishes the doctor.
    public func rekey(deviceID: String, product: String) async throws -> (report: DoctorReport, key: DevicePublicKey) {
        let device = try await devices.openDFU(deviceID)
        var left = false
        defer { if !left { Task { await BenchDevices.close(device) } } }
        if BenchDevices.isProtected(device) { throw DeviceKeyCommandError.protected(deviceID: device.deviceID) }
        let platform = device.platform
        var slot = try await device.readPrivateKeySlot()
        defer { SecretBytes.clear(&slot) }
        let registry = escrow.registry

        // An earlier doctor on this device that was stopped after recording its intent: when the
        // device holds the key it meant to load, that doctor is finished (registered), not redone.
        if let interrupted = try await registry.openKeyDoctorIntent(deviceID: device.deviceID) {
            if case .key(let held) = DeviceKeySlotContent(slot: slot), held.publicKey.fingerprint == interrupted.newFingerprint {
                var report = DoctorReport(deviceID: device.deviceID, platform: platform.name, product: interrupted.productID,
                                          publicKey: held.publicKey, escrowObjectID: interrupted.escrowObjectID, found: "key")
                report.previousFingerprint = interrupted.previousFingerprint
                report.doctorIntentID = interrupted.id
                report.finishedInterrupted = true
                report.leaveFailure = await BenchDevices.leaveReportingFailure(device).map { "\($0)" }
                left = true
                return (report, held.publicKey)
            }
            // Stopped before the load: the key never reached the device (its backup stays, unregistered).
            try await registry.closeKeyDoctorIntentNotLoaded(id: interrupted.id)
        }

        let key = try platform.generateDeviceKey()
        var report = DoctorReport(deviceID: device.deviceID, platform: platform.name, product: product,
                                  publicKey: key.publicKey, escrowObjectID: 0, found: "blank")
        switch DeviceKeySlotContent(slot: slot) {
        case .blank: report.found = "blank"
        case .corrupt: report.found = "corrupt"
        case .key(let previous):
            report.found = "key"
            report.previousFingerprint = previous.publicKey.fingerprint
            // Already backed up (the line's escrow, an earlier doctor)? Otherwise escrow it now.
            if let recorded = try await registration.recordedBackup(of: previous.publicKey, deviceID: device.deviceID,
                                                                    product: product) {
                report.previousEscrowObjectID = recorded.id
            } else {
                report.previousEscrowObjectID = try await escrow.escrow(
                    previous, deviceID: device.deviceID, platform: platform.name, product: product, label: "keys-doctor",
                    reason: "found on the device by keys doctor; replaced").id
            }
        }
        report.escrowObjectID = try await escrow.escrow(key, deviceID: device.deviceID, platform: platform.name,
                                                        product: product, label: "keys-doctor",
                                                        reason: "made by keys doctor").id
        // Before the key reaches the device: a doctor killed from here on is found, not lost.
        report.doctorIntentID = try await registry.recordKeyDoctorIntent(
            productID: product, deviceID: device.deviceID, newFingerprint: key.publicKey.fingerprint,
            previousFingerprint: report.previousFingerprint, escrowObjectID: report.escrowObjectID, station: escrow.station).id
        try await DeviceKeySlotIO.load(key, into: device, replacing: DeviceKeySlotIO.expectation(slot))
        // The new key is in the slot and read back: a device that then fails to leave DFU must
        // still have its key registered, or it would hold an escrowed key the cloud never learns.
        report.leaveFailure = await BenchDevices.leaveReportingFailure(device).map { "\($0)" }
        left = true
        return (report, key.publicKey)
    }

    /// Registers the new key, superseding the device's active key in the product.
    public func register(_ report: DoctorReport) async throws -> DoctorReport {
        let backup = try await registration.recordedBackup(of: report.publicKey, deviceID: report.deviceID,
                                                           product: report.product)
        let (registered, superseded) = try await registration.register(
            report.publicKey, deviceID: report.deviceID, product: report.product, backup: backup, supersede: true,
            reason: "keys doctor: replaced by \(report.publicKey.fingerprint)", doctorIntent: report.doctorIntentID)
        var done = report
        done.registrationID = registered.id
        done.supersededRegistrationID = superseded?.id
        return done
    }
}
