import Foundation
import Testing
@testable import Registry

/// The registry as the provisioning workflow, the RMA bench and an audit use it.
@Suite("Registry workflow")
struct RegistryFlowTests {
    @Test("a device from detected to done, with its backup, registration, events and audit view")
    func provisioningFlow() async throws {
        try await withTestDatabase { database in
            let registry = try await database.registry()
            let fixture = try await RegistryFixture.make(registry)
            let device = randomDeviceID()
            let key = try await TestKey.random(using: registry.connection)

            let detected = try await registry.startJobDevice(jobID: fixture.job.id, deviceID: device, platform: "boron",
                                                             station: RegistryFixture.station, portPath: "1-4.2")
            #expect(detected.attempts == 1 && detected.portPath == "1-4.2" && detected.lastError == nil)
            #expect(detected.state == "detected" && detected.platform == "boron")
            // A failure, then a resume that gets further: attempts count, the last error stays visible.
            try await registry.failJobDevice(jobID: fixture.job.id, deviceID: device, from: "detected",
                                             reason: "device did not re-enumerate")
            let retry = try await registry.resumeJobDevice(jobID: fixture.job.id, deviceID: device)
            #expect(retry.state == "detected" && retry.lastGoodState == nil)
            #expect(retry.attempts == 2 && retry.lastError == "device did not re-enumerate" && retry.portPath == "1-4.2")

            let object = try await fixture.escrowed(deviceID: device, key: key)
            let registration = try await registry.registerKey(
                fixture.registration(deviceID: device, key: key, escrowObjectID: object.id))
            #expect(registration.spkiDER == key.spkiDER)
            #expect(registration.fingerprint == key.fingerprint)
            #expect(registration.jobID == fixture.job.id)
            #expect(registration.algorithm == .ec)
            let done = try await registry.advanceJobDevice(jobID: fixture.job.id, deviceID: device, from: "registered",
                                                           to: "done")
            #expect(done.state == "done" && done.attempts == 2 && done.keyFingerprint == key.fingerprint)
            #expect(try await registry.jobDevices(jobID: fixture.job.id).map(\.deviceID) == [device])

            let event = try #require(try await registry.events(jobID: fixture.job.id).first)
            #expect(event.kind == "key.registered")
            #expect(event.detail["fingerprint"] == key.fingerprint)
            #expect(event.detail["escrow_object_id"] == String(object.id))
            #expect(event.deviceID == device && event.productID == fixture.productID)

            let audited = try await registry.registrations(productID: fixture.productID)
            #expect(audited.count == 1)
            #expect(audited.first?.registration == registration)
            #expect(audited.first?.escrowObject == object)
            #expect(audited.first?.escrowObject.objectKey == "\(fixture.productID)/\(device)/\(key.fingerprint).age")
            #expect(try await registry.escrowObject(id: object.id) == object)

            let finished = try await registry.finishJob(id: fixture.job.id, status: .completed)
            #expect(finished.status == .completed)
            #expect(try await registry.job(id: fixture.job.id) == finished)
            #expect(try await registry.product(id: fixture.productID)?.platform == "boron")
        }
    }

    @Test("RMA: restore, supersede, register the replacement; the audit shows both keys")
    func rmaFlow() async throws {
        try await withTestDatabase { database in
            let registry = try await database.registry()
            let fixture = try await RegistryFixture.make(registry)
            let device = randomDeviceID()
            let original = try await TestKey.random(using: registry.connection)
            let object = try await fixture.escrowed(deviceID: device, key: original)
            let first = try await registry.registerKey(fixture.registration(deviceID: device, key: original,
                                                                           escrowObjectID: object.id))
            let active = try #require(try await registry.activeRegistration(productID: fixture.productID, deviceID: device))
            #expect(active == first)

            let failed = try await registry.recordRestoration(registrationID: active.id, station: "rma-bench",
                                                              outcome: .failed, detail: "device left DFU mode")
            let restored = try await registry.recordRestoration(registrationID: active.id, station: "rma-bench",
                                                                outcome: .restored)
            #expect(try await registry.restorations(productID: fixture.productID, deviceID: device) == [failed, restored])

            await #expect {
                _ = try await registry.recordRestoration(registrationID: 999_999, station: "rma-bench", outcome: .restored)
            } throws: { error in
                guard case RegistryError.unknownRegistration(999_999) = error else { return false }
                return true
            }

            _ = try await registry.supersedeKey(productID: fixture.productID, deviceID: device,
                                                reason: "key slot unreadable", station: "rma-bench")
            #expect(try await registry.activeRegistration(productID: fixture.productID, deviceID: device) == nil)
            let rmaJob = try await registry.createJob(productID: fixture.productID, station: "rma-bench", pipeline: "rma")
            let replacementFixture = RegistryFixture(registry: registry, productID: fixture.productID, job: rmaJob)
            let replacement = try await TestKey.random(using: registry.connection)
            let replacementObject = try await replacementFixture.escrowed(deviceID: device, key: replacement)
            _ = try await registry.registerKey(replacementFixture.registration(deviceID: device, key: replacement,
                                                                              escrowObjectID: replacementObject.id))

            let all = try await registry.registrations(productID: fixture.productID)
            #expect(all.map(\.registration.status) == [.superseded, .active])
            let activeOnly = try await registry.registrations(productID: fixture.productID, status: .active)
            #expect(activeOnly.map(\.registration.fingerprint) == [replacement.fingerprint])
            let kinds = try await registry.events(deviceID: device).map(\.kind)
            #expect(kinds == ["key.registered", "key.restore_failed", "key.restored", "key.superseded", "key.registered"])

            _ = try await registry.revokeKey(productID: fixture.productID, deviceID: device, reason: "stolen",
                                             station: "officer")
            #expect(try await registry.registrations(productID: fixture.productID, status: .revoked).count == 1)
        }
    }

    @Test("a batch of registrations commits all or nothing")
    func batchRegistration() async throws {
        try await withTestDatabase { database in
            let registry = try await database.registry()
            let fixture = try await RegistryFixture.make(registry)
            var batch: [NewKeyRegistration] = []
            for _ in 0..<5 {
                let device = randomDeviceID()
                let key = try await TestKey.random(using: registry.connection)
                let object = try await fixture.escrowed(deviceID: device, key: key)
                batch.append(fixture.registration(deviceID: device, key: key, escrowObjectID: object.id))
            }
            // The last one reuses the first one's key: the whole batch is refused.
            var poisoned = batch
            let device = randomDeviceID()
            let reused = TestKey(spkiDER: batch[0].spkiDER, fingerprint: batch[0].fingerprint)
            let object = try await fixture.escrowed(deviceID: device, key: reused)
            poisoned.append(fixture.registration(deviceID: device, key: reused, escrowObjectID: object.id))
            await #expect {
                _ = try await registry.registerKeys(poisoned)
            } throws: { error in
                guard case RegistryError.fingerprintConflict(batch[0].fingerprint, _, _, _) = error else { return false }
                return true
            }
            #expect(try await registry.registrations(productID: fixture.productID).isEmpty)

            let registered = try await registry.registerKeys(batch)
            #expect(registered.map(\.deviceID) == batch.map(\.deviceID))
            #expect(try await registry.registrations(productID: fixture.productID).count == 5)
            #expect(try await registry.jobDevices(jobID: fixture.job.id).filter { $0.state == "registered" }.count == 5)
        }
    }
}
