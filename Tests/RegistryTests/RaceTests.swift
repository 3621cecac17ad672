import Foundation
import Testing
@testable import Registry

/// Two stations racing on separate connections: the database picks exactly one winner.
@Suite("Races")
struct RaceTests {
    static let rounds = 8

    @Test("two stations registering different keys for the same device: one wins, one gets a conflict")
    func sameDevice() async throws {
        try await withTestDatabase { database in
            let setup = try await database.registry()
            let fixture = try await RegistryFixture.make(setup)
            // Each station runs its own job (a job device registers only the key recorded for it).
            let jobB = try await setup.createJob(productID: fixture.productID, station: "station-02", pipeline: "boron-factory")
            let fixtureB = RegistryFixture(registry: setup, productID: fixture.productID, job: jobB)
            let stationA = try await database.registry()
            let stationB = try await database.registry()
            for _ in 0..<Self.rounds {
                let device = randomDeviceID()
                let keyA = try await TestKey.random(using: setup.connection)
                let keyB = try await TestKey.random(using: setup.connection)
                let objectA = try await fixture.escrowed(deviceID: device, key: keyA)
                let objectB = try await fixtureB.escrowed(deviceID: device, key: keyB)
                async let a = capture { try await stationA.registerKey(
                    fixture.registration(deviceID: device, key: keyA, escrowObjectID: objectA.id)) }
                async let b = capture { try await stationB.registerKey(
                    fixtureB.registration(deviceID: device, key: keyB, escrowObjectID: objectB.id)) }
                let results = await [a, b]
                let winners = results.compactMap { try? $0.get() }
                #expect(winners.count == 1)
                guard let winner = winners.first else { continue }
                let loserKey = winner.fingerprint == keyA.fingerprint ? keyB : keyA
                for case .failure(let error) in results {
                    guard case let RegistryError.activeKeyConflict(_, conflictDevice, active, attempted) = error else {
                        Issue.record("unexpected error \(error)")
                        continue
                    }
                    #expect(conflictDevice == device)
                    #expect(active == winner.fingerprint)
                    #expect(attempted == loserKey.fingerprint)
                }
                let active = try await setup.activeRegistration(productID: fixture.productID, deviceID: device)
                #expect(active?.fingerprint == winner.fingerprint)
                let winnerJob = winner.fingerprint == keyA.fingerprint ? fixture.job.id : jobB.id
                #expect(try await setup.jobDevice(jobID: winnerJob, deviceID: device)?.state == "registered")
            }
        }
    }

    @Test("two connections registering the same public key for two devices: one wins, one gets a conflict")
    func sameKey() async throws {
        try await withTestDatabase { database in
            let setup = try await database.registry()
            let fixture = try await RegistryFixture.make(setup)
            let stationA = try await database.registry()
            let stationB = try await database.registry()
            for _ in 0..<Self.rounds {
                let (deviceA, deviceB) = (randomDeviceID(), randomDeviceID())
                let key = try await TestKey.random(using: setup.connection)
                let objectA = try await fixture.escrowed(deviceID: deviceA, key: key)
                let objectB = try await fixture.escrowed(deviceID: deviceB, key: key)
                async let a = capture { try await stationA.registerKey(
                    fixture.registration(deviceID: deviceA, key: key, escrowObjectID: objectA.id)) }
                async let b = capture { try await stationB.registerKey(
                    fixture.registration(deviceID: deviceB, key: key, escrowObjectID: objectB.id)) }
                let results = await [a, b]
                let winners = results.compactMap { try? $0.get() }
                #expect(winners.count == 1)
                guard let winner = winners.first else { continue }
                let loserDevice = winner.deviceID == deviceA ? deviceB : deviceA
                for case .failure(let error) in results {
                    guard case let RegistryError.fingerprintConflict(fingerprint, attempted, registered, _) = error else {
                        Issue.record("unexpected error \(error)")
                        continue
                    }
                    #expect(fingerprint == key.fingerprint)
                    #expect(attempted == loserDevice)
                    #expect(registered == winner.deviceID)
                }
                #expect(try await setup.jobDevice(jobID: fixture.job.id, deviceID: loserDevice)?.state == "escrowed")
            }
        }
    }

    @Test("the loser waits for the winner's open transaction, then conflicts")
    func loserWaitsForOpenTransaction() async throws {
        try await withTestDatabase { database in
            let setup = try await database.registry()
            let fixture = try await RegistryFixture.make(setup)
            let device = randomDeviceID()
            let keyA = try await TestKey.random(using: setup.connection)
            let keyB = try await TestKey.random(using: setup.connection)
            let objectA = try await setup.recordEscrowObject(fixture.escrowObject(deviceID: device, key: keyA))
            let objectB = try await fixture.escrowed(deviceID: device, key: keyB)
            let holder = try await database.connect()
            let registrationA = fixture.registration(deviceID: device, key: keyA, escrowObjectID: objectA.id, jobID: .some(nil))
            // A holds its uncommitted insert for a moment while B tries the same device.
            async let a: Void = holder.transaction { transaction in
                try transaction.execute("""
                    INSERT INTO key_registrations (product_id, device_id, algorithm, spki_der, fingerprint,
                                                   escrow_object_id, station)
                    VALUES ($1, $2, 'ec', $3, $4, $5, 's')
                    """, [registrationA.productID, device, PostgresValue.bytea(keyA.spkiDER), keyA.fingerprint, objectA.id])
                try transaction.execute("SELECT pg_sleep(0.5)")
            }
            try await Task.sleep(for: .milliseconds(100))
            let stationB = try await database.registry()
            await #expect {
                _ = try await stationB.registerKey(fixture.registration(deviceID: device, key: keyB, escrowObjectID: objectB.id))
            } throws: { error in
                guard case RegistryError.activeKeyConflict(_, device, keyA.fingerprint, keyB.fingerprint) = error else {
                    return false
                }
                return true
            }
            try await a
        }
    }
}
