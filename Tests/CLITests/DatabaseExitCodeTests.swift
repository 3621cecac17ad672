import Testing
import Registry
import CommandReporting

/// How registry and database errors map to exit codes: 75 only for what retrying can fix.
@Suite("keyline db exit codes")
struct DatabaseExitCodeTests {
    @Test("key conflicts are data errors (65): running the registration again fails the same way")
    func keyConflicts() {
        let fingerprint = RegistryError.fingerprintConflict(fingerprint: "ab12", attemptedDeviceID: "e00fce68aaaaaaaaaaaaaaaa",
                                                            registeredDeviceID: "e00fce68bbbbbbbbbbbbbbbb", registeredProductID: "p")
        let active = RegistryError.activeKeyConflict(productID: "p", deviceID: "e00fce68aaaaaaaaaaaaaaaa",
                                                     activeFingerprint: "cd34", attemptedFingerprint: "ab12")
        #expect(fingerprint.exit == .dataError)
        #expect(active.exit == .dataError)
        // Escrow objects are write-once: a second record of the same object never succeeds later.
        #expect(RegistryError.escrowObjectExists(storeURI: "file:///escrow", objectKey: "p/d/f.age").exit == .dataError)
    }

    @Test("settings, login and missing-database errors are configuration (78); an unreachable server is temporary (75)")
    func connectionErrors() {
        #expect(DatabaseFailure(PostgresError(kind: .invalidSettings, message: "bad")).exit == .configuration)
        for sqlState in ["28P01", "28000", "3D000"] {
            let error = PostgresError(kind: .connectionFailed, sqlState: sqlState, message: "refused")
            #expect(DatabaseFailure(error).exit == .configuration, "\(sqlState)")
            #expect(RegistryError.database(error).exit == .configuration, "\(sqlState)")
        }
        #expect(DatabaseFailure(PostgresError(kind: .connectionFailed, message: "no such socket")).exit == .tempFail)
        #expect(DatabaseFailure(PostgresError(kind: .connectionFailed, sqlState: "57P03", message: "starting up")).exit == .tempFail)
        #expect(DatabaseFailure(PostgresError(kind: .connectionLost, message: "gone")).exit == .tempFail)
        #expect(DatabaseFailure(PostgresError(kind: .server, sqlState: "42501", message: "denied")).exit == .noPermission)
    }
}
