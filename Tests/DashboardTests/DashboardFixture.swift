import AsyncHTTPClient
import Foundation
import NIOCore
import Registry
import TestSupport
@testable import Dashboard

/// A migrated database of its own with the cluster's administrator (trusted, like migrations)
/// and helpers for logins of each role, dropped afterwards with the logins it made.
final class DashboardDatabase: @unchecked Sendable {
    let name: String
    let settings: ConnectionSettings
    let admin: RegistryDatabase
    private let lock = NSLock()
    private var logins: [String] = []

    private init(name: String, admin: RegistryDatabase) {
        self.name = name
        self.settings = TestPostgres.settings.with(database: name)
        self.admin = admin
    }

    static func with(_ body: (DashboardDatabase) async throws -> Void) async throws {
        let name = "kl_dash_" + suffix()
        let server = try await PostgresConnection.connect(TestPostgres.settings)
        try await server.execute("CREATE DATABASE \(name)")
        await server.close()
        let connection = try await PostgresConnection.connect(TestPostgres.settings.with(database: name))
        try await MigrationRunner(connection: connection).migrate()
        let database = DashboardDatabase(name: name, admin: RegistryDatabase(client: connection))
        var failure: (any Error)?
        do { try await body(database) } catch { failure = error }
        await connection.close()
        let cleanup = try await PostgresConnection.connect(TestPostgres.settings)
        try await cleanup.execute("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
        for login in database.lock.withLock({ database.logins }) { try await cleanup.execute("DROP ROLE IF EXISTS \(login)") }
        await cleanup.close()
        if let failure { throw failure }
    }

    static func suffix() -> String { String((0..<10).map { _ in "abcdefghijklmnopqrstuvwxyz0123456789".randomElement()! }) }

    /// A real login in `role` (`auditor`, `station`, `rma`), bound as the administrator binds one.
    func login(_ role: String, station: String? = nil) async throws -> ConnectionSettings {
        let user = "kl_dash_\(role)_" + Self.suffix()
        _ = try await admin.client.execute("CREATE ROLE \(user) LOGIN IN ROLE keyline_\(role)", [])
        _ = try await admin.client.execute("INSERT INTO station_logins (login, role, station) VALUES ($1, $2, $3)",
                                       [user, role, role == "auditor" ? nil : station ?? "line-a"])
        lock.withLock { logins.append(user) }
        return settings.with(user: user)
    }
}

/// A dashboard server on an ephemeral loopback port for the length of `body`.
func withDashboard(_ database: DashboardDatabase, token: AccessToken? = nil,
                   _ body: (_ base: String, _ server: DashboardServer) async throws -> Void) async throws {
    let login = try await database.login("auditor")
    let server = try await DashboardServer.prepare(settings: try DashboardSettings(listen: "127.0.0.1:0", token: token),
                                                   database: login)
    let address = LockedValue<String?>(nil)
    let running = Task { try await server.run { address.set($0) } }
    var failure: (any Error)?
    do {
        try await waitUntil(deadline: .seconds(60), "the dashboard listening") { address.get() != nil }
        try await body(address.get()!, server)
    } catch {
        failure = error
    }
    running.cancel()
    _ = await running.result
    if let failure { throw failure }
}

final class LockedValue<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func get() -> Value { lock.withLock { value } }
    func set(_ new: Value) { lock.withLock { value = new } }
    func update(_ body: (inout Value) -> Void) { lock.withLock { body(&value) } }
}

/// GET `url` (with `headers`), the status and body as text; redirects are not followed.
func get(_ url: String, headers: [(String, String)] = []) async throws -> (status: Int, body: String, setCookies: [String]) {
    try await send(HTTPClientRequest(url: url), headers: headers)
}

/// POST `form` to `url` as `application/x-www-form-urlencoded`; redirects are not followed.
func post(_ url: String, form: String, headers: [(String, String)] = []) async throws -> (status: Int, body: String, setCookies: [String]) {
    var request = HTTPClientRequest(url: url)
    request.method = .POST
    request.body = .bytes(ByteBuffer(string: form))
    return try await send(request, headers: [("Content-Type", "application/x-www-form-urlencoded")] + headers)
}

private func send(_ request: HTTPClientRequest, headers: [(String, String)]) async throws -> (status: Int, body: String, setCookies: [String]) {
    var request = request
    for (name, value) in headers { request.headers.add(name: name, value: value) }
    let client = HTTPClient(eventLoopGroupProvider: .singleton,
                            configuration: HTTPClient.Configuration(redirectConfiguration: .disallow))
    do {
        let response = try await client.execute(request, timeout: .seconds(60))
        let body = try await response.body.collect(upTo: 16 << 20)
        try await client.shutdown()
        return (Int(response.status.code), String(buffer: body), response.headers["set-cookie"])
    } catch {
        try? await client.shutdown()
        throw error
    }
}

/// A product, a job at `station`, and devices on ports through the administrator's login.
struct FloorFixture {
    static let product = "dash-product"

    static func job(_ registry: RegistryDatabase, station: String) async throws -> Job {
        if try await registry.product(id: product) == nil {
            _ = try await registry.createProduct(id: product, name: "Dashboard product", platform: "p2")
        }
        return try await registry.createJob(productID: product, station: station, pipeline: "dash-pipeline")
    }

    static func deviceID(_ number: Int) -> String { String(format: "e00fce68%016x", number) }
}
