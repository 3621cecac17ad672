import Age
import DeviceBus
import DeviceKeys
import Escrow
import Foundation
import ParticlePlatform
import Registry
import RMABench
import Simulator
import Testing
import TestSupport

/// Issue 21 items 5 and 6: the bench escrows write-ahead (its intent in the registry before the
/// object is written), an unrecorded object it cannot check no longer blocks a key (the next
/// generation), and `keys doctor` records its intent before writing a key to the device, so an
/// interrupted doctor is found and finished rather than leaving a key nobody knows.
@Suite("Bench write-ahead escrow and keys doctor intents", .serialized)
struct BenchWriteAheadTests {
    /// A directory store that notes, at each put, the bench intent the registry holds for the object.
    final class IntentWitnessStore: EscrowStore, @unchecked Sendable {
        let inner: DirectoryEscrowStore
        let registry: RegistryDatabase
        private let lock = NSLock()
        private(set) var intentsAtPut: [String?] = []

        init(root: URL, registry: RegistryDatabase) {
            inner = DirectoryEscrowStore(root: root)
            self.registry = registry
        }

        var storeURI: String { inner.storeURI }
        func put(_ ciphertext: [UInt8], at key: EscrowObjectKey) async throws -> String {
            let intent = try await registry.pendingBenchEscrowIntent(storeURI: storeURI, objectKey: key.path)
            lock.withLock { intentsAtPut.append(intent?.ciphertextSHA256) }
            return try await inner.put(ciphertext, at: key)
        }
        func get(_ key: EscrowObjectKey, expectedSHA256: String) async throws -> [UInt8] {
            try await inner.get(key, expectedSHA256: expectedSHA256)
        }
        func contains(_ key: EscrowObjectKey) async throws -> Bool { try await inner.contains(key) }
        func adopt(_ key: EscrowObjectKey, expectedSHA256: String) async throws -> Bool {
            try await inner.adopt(key, expectedSHA256: expectedSHA256)
        }
        func sweepStaleTemporaryFiles(olderThan age: Duration) async throws -> Int {
            try await inner.sweepStaleTemporaryFiles(olderThan: age)
        }
        var displayName: String { inner.displayName }
        func location(of key: EscrowObjectKey) -> String { inner.location(of: key) }
        func sha256s(ofObjectsAt objectKeys: [String]) async -> [Result<String?, any Error>] {
            await inner.sha256s(ofObjectsAt: objectKeys)
        }
        func contents(ofObjectsAt objectKeys: [String]) async -> [Result<[UInt8]?, any Error>] {
            await inner.contents(ofObjectsAt: objectKeys)
        }
        func objectPages(under product: String?) -> AsyncThrowingStream<[String], any Error> {
            inner.objectPages(under: product)
        }
    }

    static let device = "e00fce68aaaaaaaaaaaaaaaa"

    @Test("item 5: the bench records its intent (object key, ciphertext hash) before the object is written")
    func benchIntentBeforeWrite() async throws {
        try await TestPostgres.withMigratedDatabase { registry in
            _ = try await registry.createProduct(id: "bench-p", name: "Bench")
            let scratch = try ScratchDirectory()
            let store = IntentWitnessStore(root: scratch.file("store"), registry: registry)
            let escrow = BenchEscrow(registry: registry, store: store, recipients: [X25519Identity.generate().recipient],
                                     station: "bench")
            let key = try DevicePrivateKey.generate(.ec)
            let object = try await escrow.escrow(key, deviceID: Self.device, platform: "boron", product: "bench-p",
                                                 label: "test", reason: "test")
            #expect(store.intentsAtPut == [object.ciphertextSHA256])
            #expect(try await registry.pendingBenchEscrowIntent(storeURI: store.storeURI, objectKey: object.objectKey) == nil)
        }
    }

    @Test("item 5: an unrecorded object at the key that the bench cannot decrypt is passed by for the next generation, and stays unrecorded for the audit")
    func unrecordedObjectIsPassedBy() async throws {
        try await TestPostgres.withMigratedDatabase { registry in
            _ = try await registry.createProduct(id: "bench-p", name: "Bench")
            let scratch = try ScratchDirectory()
            let store = DirectoryEscrowStore(root: scratch.file("store"))
            let key = try DevicePrivateKey.generate(.ec)
            let blocked = try EscrowObjectKey(product: "bench-p", deviceID: Self.device, publicKeySHA256: key.publicKey.fingerprint)
            // A backup put there by hand, to a recipient whose identity the bench does not hold.
            let byHand = try EscrowBackup(deviceID: Self.device, platform: "boron", product: "bench-p", privateKey: key,
                                          job: "by-hand", station: "desk").seal(to: [X25519Identity.generate().recipient])
            _ = try await store.put(byHand.ciphertext, at: blocked)

            let identity = X25519Identity.generate()
            let escrow = BenchEscrow(registry: registry, store: store, recipients: [identity.recipient],
                                     identities: [identity], station: "bench")
            let object = try await escrow.escrow(key, deviceID: Self.device, platform: "boron", product: "bench-p",
                                                 label: "test", reason: "test")
            #expect(object.objectKey == "bench-p/\(Self.device)/\(key.publicKey.fingerprint).g2.age")
            let recordedKey = try EscrowObjectKey(recordedPath: object.objectKey, product: "bench-p", deviceID: Self.device,
                                                  publicKeySHA256: key.publicKey.fingerprint)
            let backup = try EscrowBackup.decrypt(try await store.get(recordedKey, expectedSHA256: object.ciphertextSHA256),
                                                  identities: [identity])
            #expect(backup.privateKey.publicKey.fingerprint == key.publicKey.fingerprint)
            // The blocked object is untouched and unrecorded: what `audit --check-store` reports.
            #expect(try await store.get(blocked, expectedSHA256: byHand.sha256) == byHand.ciphertext)
            #expect(try await registry.escrowObject(storeURI: store.storeURI, objectKey: blocked.path) == nil)
            // A second escrow of the same key finds its record, not the blocked object.
            let again = try await escrow.escrow(key, deviceID: Self.device, platform: "boron", product: "bench-p",
                                                label: "test", reason: "test")
            #expect(again.id == object.id || again.objectKey.hasSuffix(".g2.age"))
        }
    }

    @Test("item 6: keys doctor records its intent before the load; a doctor stopped after it is found and finished, not redone",
          .timeLimit(.minutes(2)))
    func interruptedDoctorIsFinished() async throws {
        try await TestPostgres.withMigratedDatabase { registry in
            let scratch = try ScratchDirectory()
            let photon = try await RegisteredPhoton(registry, scratch: scratch, product: "doctor-p", seed: 61)
            try photon.device.writeMemory(alt: 1, address: UInt32(Platform.photon.privateKeySlot.offset), bytes: photon.paddedSlot)
            let identity = photon.identity
            let escrow = BenchEscrow(registry: registry, store: DirectoryEscrowStore(root: scratch.file("store")),
                                     recipients: [identity.recipient], identities: [identity], station: "bench")
            let devices = BenchDevices(bus: photon.fleet, timeout: .seconds(10))
            defer { devices.stop() }
            let doctor = KeyDoctor(devices: devices, escrow: escrow)

            // Escrowed, intent recorded, loaded, left DFU — and stopped before registering.
            let (first, newKey) = try await doctor.rekey(deviceID: photon.device.deviceID, product: "doctor-p")
            let open = try #require(try await registry.openKeyDoctorIntent(deviceID: photon.device.deviceID))
            #expect(open.newFingerprint == newKey.fingerprint && open.previousFingerprint == photon.original.publicKey.fingerprint)
            #expect(try await registry.openKeyDoctorIntents().map(\.id) == [open.id])
            #expect(first.doctorIntentID == open.id)
            // The audit reports it.
            let settings = try #require(registry.client as? PostgresConnection).settings
            let found = try await RegistryDatabase.audit(settings, scope: AuditScope(productID: "doctor-p")) { audit in
                var codes: [String] = []
                try await audit.forEachInterruptedDoctorFinding { codes.append("\($0.code) \($0.deviceID ?? "")") }
                return codes
            }
            #expect(found == ["keys_doctor_interrupted \(photon.device.deviceID)"])

            // The next doctor finds it: the device holds that key, so it is registered, not replaced.
            let (second, heldKey) = try await doctor.rekey(deviceID: photon.device.deviceID, product: "doctor-p")
            #expect(second.finishedInterrupted && heldKey.fingerprint == newKey.fingerprint)
            let done = try await doctor.register(second)
            #expect(done.registrationID != nil && done.supersededRegistrationID == photon.registrationID)
            #expect(try await registry.activeRegistration(productID: "doctor-p", deviceID: photon.device.deviceID)?.fingerprint
                    == newKey.fingerprint)
            #expect(try await registry.openKeyDoctorIntent(deviceID: photon.device.deviceID) == nil)
        }
    }
}
