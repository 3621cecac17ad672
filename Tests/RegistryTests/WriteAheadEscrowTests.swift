import Foundation
import Testing
@testable import Registry

/// The write-ahead escrow half of issue 9's crash-safety contract (design.md, "What makes resume
/// possible"): an intent recorded before the store write, then committed in one idempotent
/// transaction that records the escrow object and moves the device to escrowed.
@Suite("Crash safety: write-ahead escrow")
struct WriteAheadEscrowTests {
    @Test("write-ahead escrow: intent, then commit twice = one escrow object and the device escrowed")
    func intentThenCommitIsIdempotent() async throws {
        try await withKeyReadyDevice { registry, fixture, device, key in
            #expect(try await registry.escrowIntent(jobID: fixture.job.id, deviceID: device) == nil)

            var planned = fixture.escrowObject(deviceID: device, key: key)
            let first = try await registry.recordEscrowIntent(planned)
            #expect(!first.isCommitted && first.ciphertextSHA256 == planned.ciphertextSHA256)
            // A crash before the write: the new seal's hash replaces the pending intent.
            planned.ciphertextSHA256 = String(repeating: "cd", count: 32)
            planned.sizeBytes = 1300
            let replaced = try await registry.recordEscrowIntent(planned)
            #expect(replaced.id == first.id && replaced.ciphertextSHA256 == planned.ciphertextSHA256)
            #expect(try await registry.escrowIntent(jobID: fixture.job.id, deviceID: device) == replaced)
            #expect(try await registry.escrowObject(jobID: fixture.job.id, deviceID: device) == nil)

            let object = try await registry.commitEscrow(jobID: fixture.job.id, deviceID: device)
            #expect(object.ciphertextSHA256 == planned.ciphertextSHA256 && object.sizeBytes == 1300)
            #expect(object.jobID == fixture.job.id && object.objectKey == planned.objectKey)
            // A crash after the commit, before the runner saw it: committing again is a no-op.
            #expect(try await registry.commitEscrow(jobID: fixture.job.id, deviceID: device) == object)
            let count = try await registry.connection.query(
                "SELECT count(*) AS n FROM escrow_objects WHERE device_id = $1", [device])
            #expect(try count[0].decode("n", as: Int.self) == 1)
            let escrowed = try #require(try await registry.jobDevice(jobID: fixture.job.id, deviceID: device))
            #expect(escrowed.state == "escrowed")
            #expect(try await registry.escrowIntent(jobID: fixture.job.id, deviceID: device)?.committedEscrowObjectID == object.id)
            #expect(try await registry.escrowObject(jobID: fixture.job.id, deviceID: device) == object)

            // The committed intent: the same record again is returned, another is refused.
            #expect(try await registry.recordEscrowIntent(planned).committedEscrowObjectID == object.id)
            var other = planned
            other.ciphertextSHA256 = String(repeating: "ef", count: 32)
            await #expect {
                _ = try await registry.recordEscrowIntent(other)
            } throws: { error in
                guard case RegistryError.escrowIntentCommitted = error else { return false }
                return true
            }
            await expectServerError("23514") {
                try await registry.connection.execute(
                    "UPDATE escrow_intents SET ciphertext_sha256 = $2 WHERE id = $1", [first.id, other.ciphertextSHA256])
            }

            // Registering twice (a replay after a crash): one registration, one event.
            let registration = fixture.registration(deviceID: device, key: key, escrowObjectID: object.id)
            let registered = try await registry.registerKey(registration)
            #expect(try await registry.registerKey(registration) == registered)
            #expect(try await registry.events(deviceID: device).map(\.kind) == ["key.registered"])
            try await registry.advanceJobDevice(jobID: fixture.job.id, deviceID: device, from: "registered", to: "done")
            #expect(try await registry.registerKey(registration) == registered)
            #expect(try await registry.commitEscrow(jobID: fixture.job.id, deviceID: device) == object)
        }
    }

    @Test("commit without an intent is refused and changes nothing; an intent needs the device key_ready")
    func commitWithoutIntentRefused() async throws {
        try await withTestDatabase { database in
            let registry = try await database.registry()
            let fixture = try await RegistryFixture.make(registry)
            let device = randomDeviceID()
            let key = try await TestKey.random(using: registry.connection)
            _ = try await registry.startJobDevice(jobID: fixture.job.id, deviceID: device, platform: "boron",
                                                  station: RegistryFixture.station, portPath: nil)
            await #expect {
                _ = try await registry.recordEscrowIntent(fixture.escrowObject(deviceID: device, key: key))
            } throws: { CrashSafetyTests.isStateConflict($0, "key_ready", "detected") }
            var jobless = fixture.escrowObject(deviceID: device, key: key)
            jobless.jobID = nil
            await #expect(throws: RegistryError.self) { _ = try await registry.recordEscrowIntent(jobless) }

            try await fixture.keyReady(deviceID: device, key: key)
            await #expect {
                _ = try await registry.commitEscrow(jobID: fixture.job.id, deviceID: device)
            } throws: { error in
                guard case RegistryError.noEscrowIntent(fixture.job.id, device) = error else { return false }
                return true
            }
            #expect(try await registry.jobDevice(jobID: fixture.job.id, deviceID: device)?.state == "key_ready")
            #expect(try await registry.escrowObject(jobID: fixture.job.id, deviceID: device) == nil)

            // A commit while the device is failed waits for the resume.
            _ = try await registry.recordEscrowIntent(fixture.escrowObject(deviceID: device, key: key))
            try await registry.failJobDevice(jobID: fixture.job.id, deviceID: device, from: "key_ready", reason: "x")
            await #expect {
                _ = try await registry.commitEscrow(jobID: fixture.job.id, deviceID: device)
            } throws: { CrashSafetyTests.isStateConflict($0, "key_ready", "failed") }
            _ = try await registry.resumeJobDevice(jobID: fixture.job.id, deviceID: device)
            let object = try await registry.commitEscrow(jobID: fixture.job.id, deviceID: device)
            #expect(try await registry.jobDevice(jobID: fixture.job.id, deviceID: device)?.state == "escrowed")
            #expect(object.publicKeySHA256 == key.fingerprint)
        }
    }

    @Test("commit reuses an identical escrow object already recorded and refuses other bytes at the same key")
    func commitReusesIdenticalObject() async throws {
        try await withTestDatabase { database in
            let registry = try await database.registry()
            let fixture = try await RegistryFixture.make(registry)
            let (deviceA, deviceB) = (randomDeviceID(), randomDeviceID())
            let (keyA, keyB) = (try await TestKey.random(using: registry.connection),
                                try await TestKey.random(using: registry.connection))
            try await fixture.keyReady(deviceID: deviceA, key: keyA)
            let recorded = try await registry.recordEscrowObject(fixture.escrowObject(deviceID: deviceA, key: keyA))
            _ = try await registry.recordEscrowIntent(fixture.escrowObject(deviceID: deviceA, key: keyA))
            #expect(try await registry.commitEscrow(jobID: fixture.job.id, deviceID: deviceA).id == recorded.id)

            try await fixture.keyReady(deviceID: deviceB, key: keyB)
            var different = fixture.escrowObject(deviceID: deviceB, key: keyB)
            different.ciphertextSHA256 = String(repeating: "01", count: 32)
            _ = try await registry.recordEscrowObject(different)
            _ = try await registry.recordEscrowIntent(fixture.escrowObject(deviceID: deviceB, key: keyB))
            await #expect {
                _ = try await registry.commitEscrow(jobID: fixture.job.id, deviceID: deviceB)
            } throws: { error in
                guard case RegistryError.escrowObjectExists = error else { return false }
                return true
            }
            #expect(try await registry.jobDevice(jobID: fixture.job.id, deviceID: deviceB)?.state == "key_ready")
        }
    }
}
