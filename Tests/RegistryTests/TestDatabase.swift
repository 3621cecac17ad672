import Foundation
import Testing
@testable import Registry
import TestSupport

/// The cluster the tests use (`TestPostgres`: this checkout's `make db-up` cluster, or
/// `KEYLINE_TEST_DATABASE_URL`). The login must be able to create databases and roles (the local
/// cluster's `keyline` is a superuser).
enum TestCluster {
    static let packageRoot = TestPostgres.packageRoot

    static var settings: ConnectionSettings { TestPostgres.settings }
}

/// A lock-protected value shared between concurrent test code.
final class LockedBox<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withValue<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}

/// A database of its own for one test, dropped afterwards, with login users for the roles.
final class TestDatabase: Sendable {
    let name: String
    /// Connects to this database as the cluster's administrator.
    let settings: ConnectionSettings
    private let createdLogins = LockedBox<[String]>([])

    private init(name: String) {
        self.name = name
        self.settings = TestCluster.settings.with(database: name)
    }

    static func randomSuffix() -> String {
        String((0..<10).map { _ in "abcdefghijklmnopqrstuvwxyz0123456789".randomElement()! })
    }

    /// Creates `kl_test_<random>`; migrated unless asked otherwise.
    static func create(migrated: Bool = true) async throws -> TestDatabase {
        let database = TestDatabase(name: "kl_test_" + randomSuffix())
        let admin = try await PostgresConnection.connect(TestCluster.settings)
        // Identifiers cannot be parameters; the name is generated above from [a-z0-9_].
        try await admin.execute("CREATE DATABASE \(database.name)")
        await admin.close()
        if migrated {
            let connection = try await database.connect()
            try await MigrationRunner(connection: connection).migrate()
            await connection.close()
        }
        return database
    }

    func connect() async throws -> PostgresConnection {
        try await PostgresConnection.connect(settings, label: "test.\(name)")
    }

    func registry() async throws -> RegistryDatabase {
        RegistryDatabase(client: try await connect())
    }

    /// The station or bench a test login of `role` is bound to unless told otherwise.
    static func defaultStation(for role: String) -> String? {
        switch role {
        case "keyline_station": RegistryFixture.station
        case "keyline_rma": "rma-bench"
        default: nil
        }
    }

    /// A real login (not SET ROLE) that is a member of `role`, bound (table station_logins) to
    /// `station` as the administrator binds a factory login; returns a registry connected as it.
    func login(memberOf role: String, station: String? = nil, bound: Bool = true) async throws
        -> (user: String, registry: RegistryDatabase) {
        let user = "kl_login_" + Self.randomSuffix()
        let password = Self.randomSuffix() + Self.randomSuffix()
        let admin = try await connect()
        try await admin.execute("CREATE ROLE \(user) LOGIN PASSWORD '\(password)' IN ROLE \(role)")
        if bound, role.hasPrefix("keyline_") {
            let kind = String(role.dropFirst("keyline_".count))
            let boundStation: String? = kind == "auditor" ? nil : (station ?? Self.defaultStation(for: role))
            try await admin.execute("INSERT INTO station_logins (login, role, station) VALUES ($1, $2, $3)",
                                    [user, kind, boundStation])
        }
        await admin.close()
        createdLogins.withValue { $0.append(user) }
        let connection = try await PostgresConnection.connect(settings.with(user: user, password: password),
                                                              label: "test.\(user)")
        return (user, RegistryDatabase(client: connection))
    }

    func drop() async {
        do {
            let admin = try await PostgresConnection.connect(TestCluster.settings)
            try await admin.execute("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
            for user in createdLogins.withValue({ $0 }) {
                try await admin.execute("DROP ROLE IF EXISTS \(user)")
            }
            await admin.close()
        } catch {
            Issue.record("could not drop test database \(name): \(error)")
        }
    }
}

/// Swift Testing starts every test at once; a few databases at a time keep the connection count
/// well under a server's max_connections (100 by default) when the tests use a shared server.
actor TestDatabaseGate {
    static let shared = TestDatabaseGate(limit: 6)
    private let limit: Int
    private var inUse = 0
    private var waiters: [CheckedContinuation<Void, Never>] = []

    init(limit: Int) { self.limit = limit }

    func acquire() async {
        if inUse < limit {
            inUse += 1
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    func release() {
        if waiters.isEmpty { inUse -= 1 } else { waiters.removeFirst().resume() }
    }
}

/// Runs `body` with a fresh (by default migrated) database and drops it afterwards.
func withTestDatabase<T>(migrated: Bool = true, _ body: (TestDatabase) async throws -> T) async throws -> T {
    await TestDatabaseGate.shared.acquire()
    do {
        let value = try await withTestDatabaseUngated(migrated: migrated, body)
        await TestDatabaseGate.shared.release()
        return value
    } catch {
        await TestDatabaseGate.shared.release()
        throw error
    }
}

private func withTestDatabaseUngated<T>(migrated: Bool, _ body: (TestDatabase) async throws -> T) async throws -> T {
    let database = try await TestDatabase.create(migrated: migrated)
    do {
        let value = try await body(database)
        await database.drop()
        return value
    } catch {
        await database.drop()
        throw error
    }
}

/// A migrated test database with a product and a running job (`RegistryFixture`), and one device
/// of the job at `key_ready` holding a fresh key: where most registry tests of escrow and
/// registration begin.
func withKeyReadyDevice(_ body: (RegistryDatabase, RegistryFixture, _ device: String, TestKey) async throws -> Void) async throws {
    try await withTestDatabase { database in
        let registry = try await database.registry()
        let fixture = try await RegistryFixture.make(registry)
        let device = randomDeviceID()
        let key = try await TestKey.random(using: registry.connection)
        try await fixture.keyReady(deviceID: device, key: key)
        try await body(registry, fixture, device, key)
    }
}

/// A public key stand-in: random SPKI-sized bytes and their SHA-256 (computed by PostgreSQL;
/// the registry never parses SPKI DER, it stores it and checks the fingerprint).
struct TestKey: Sendable {
    let spkiDER: [UInt8]
    let fingerprint: String

    static func random(using connection: PostgresConnection) async throws -> TestKey {
        let bytes = (0..<91).map { _ in UInt8.random(in: 0...255) }
        let rows = try await connection.query("SELECT encode(sha256($1), 'hex') AS fingerprint", [PostgresValue.bytea(bytes)])
        return TestKey(spkiDER: bytes, fingerprint: try rows[0].decode("fingerprint"))
    }
}

func randomDeviceID() -> String {
    String((0..<24).map { _ in "0123456789abcdef".randomElement()! })
}

/// A product, a running job, and helpers to take devices to `escrowed` as a station would.
struct RegistryFixture: Sendable {
    let registry: RegistryDatabase
    let productID: String
    let job: Job
    static let station = "station-01"

    static func make(_ registry: RegistryDatabase, productID: String = "acme-sensor") async throws -> RegistryFixture {
        _ = try await registry.createProduct(id: productID, name: "Acme sensor", platform: "boron")
        let job = try await registry.createJob(productID: productID, station: station, pipeline: "boron-factory")
        return RegistryFixture(registry: registry, productID: productID, job: job)
    }

    func escrowObject(deviceID: String, key: TestKey, jobID: Int64? = nil) -> NewEscrowObject {
        NewEscrowObject(productID: productID, deviceID: deviceID, publicKeySHA256: key.fingerprint,
                        storeURI: "file:///var/lib/keyline/escrow",
                        objectKey: "\(productID)/\(deviceID)/\(key.fingerprint).age",
                        ciphertextSHA256: String(repeating: "ab", count: 32), sizeBytes: 1234,
                        recipients: ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"],
                        jobID: jobID ?? job.id, station: Self.station)
    }

    static let workflowStates = ["detected", "dfu", "flashed", "server_key", "key_ready", "escrowed", "registered", "done"]

    /// Takes the device from wherever it is (first sighting if new) one step at a time to `key_ready`
    /// holding `key`, as the runner does.
    @discardableResult
    func keyReady(deviceID: String, key: TestKey, registry: RegistryDatabase? = nil) async throws -> JobDevice {
        let registry = registry ?? self.registry
        var device = try await registry.startJobDevice(jobID: job.id, deviceID: deviceID, platform: "boron",
                                                       station: Self.station, portPath: "1-2.3")
        while let index = Self.workflowStates.firstIndex(of: device.state), index < 4 {
            let next = Self.workflowStates[index + 1]
            device = try await registry.advanceJobDevice(jobID: job.id, deviceID: deviceID, from: device.state, to: next,
                                                         keyFingerprint: next == "key_ready" ? key.fingerprint : nil)
        }
        return device
    }

    /// Takes the device through the workflow to `escrowed` (intent, then commit) and returns the
    /// escrow object.
    @discardableResult
    func escrowed(deviceID: String, key: TestKey, registry: RegistryDatabase? = nil) async throws -> EscrowObject {
        let registry = registry ?? self.registry
        try await keyReady(deviceID: deviceID, key: key, registry: registry)
        _ = try await registry.recordEscrowIntent(escrowObject(deviceID: deviceID, key: key))
        return try await registry.commitEscrow(jobID: job.id, deviceID: deviceID)
    }

    func registration(deviceID: String, key: TestKey, escrowObjectID: Int64, jobID: Int64?? = nil) -> NewKeyRegistration {
        NewKeyRegistration(productID: productID, deviceID: deviceID, algorithm: .ec, spkiDER: key.spkiDER,
                           fingerprint: key.fingerprint, escrowObjectID: escrowObjectID,
                           jobID: jobID ?? job.id, station: Self.station)
    }
}

/// Expects `body` to throw a server error with `sqlState`; returns it.
@discardableResult
func expectServerError(_ sqlState: String, _ comment: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation,
                       _ body: () async throws -> Void) async -> PostgresError? {
    do {
        try await body()
        Issue.record("expected SQLSTATE \(sqlState), but it succeeded. \(comment.map { "\($0)" } ?? "")",
                     sourceLocation: sourceLocation)
        return nil
    } catch let error as PostgresError {
        #expect(error.sqlState == sqlState, "\(error)", sourceLocation: sourceLocation)
        return error
    } catch let RegistryError.database(error), let RegistryError.permissionDenied(_, error) {
        #expect(error.sqlState == sqlState, "\(error)", sourceLocation: sourceLocation)
        return error
    } catch {
        Issue.record("expected SQLSTATE \(sqlState), got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

func capture<T>(_ body: () async throws -> T) async -> Result<T, any Error> {
    do { return .success(try await body()) } catch { return .failure(error) }
}

extension RegistryDatabase {
    /// The single connection the test registries are made with (`TestDatabase.registry()`).
    var connection: PostgresConnection {
        guard let connection = client as? PostgresConnection else { fatalError("test registry without its own connection") }
        return connection
    }
}
