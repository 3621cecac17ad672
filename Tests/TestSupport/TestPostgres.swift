import Foundation
import Registry

/// Which PostgreSQL server the tests may use: the private cluster that `make test` started in
/// this checkout (`.pgdata/`), or the server `KEYLINE_TEST_DATABASE_URL` names. Never
/// `DATABASE_URL` or libpq's `PG*` variables: tests create databases and roles, and must not do
/// that on a server someone pointed their shell at for other work.
public enum TestPostgres {
    /// The variable that lets the tests use a server they did not start.
    public static let urlVariable = "KEYLINE_TEST_DATABASE_URL"

    /// The checkout the tests were built from.
    public static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    public enum Server: Equatable, Sendable {
        /// A libpq URI or conninfo string from `KEYLINE_TEST_DATABASE_URL`.
        case url(String)
        /// The socket folder of the checkout's private cluster (superuser `keyline`).
        case localCluster(socketDirectory: String)
    }

    /// The server, or an error that says how to get one.
    public static func server(environment: [String: String] = ProcessInfo.processInfo.environment,
                              packageRoot: URL = packageRoot) throws -> Server {
        if let url = environment[urlVariable], !url.isEmpty { return .url(url) }
        let socket = packageRoot.appendingPathComponent(".pgdata/socket").resolvingSymlinksInPath().path
        guard FileManager.default.fileExists(atPath: socket + "/.s.PGSQL.5432") else {
            throw TestPostgresUnavailable()
        }
        return .localCluster(socketDirectory: socket)
    }

    /// True when the tests' server is the local cluster reached through its socket (no
    /// DATABASE_URL, PGHOST empty or a socket folder): only there do logins a test creates connect
    /// without a password (the trust rule `make db-up` writes). Tests that run station or auditor
    /// logins of their own are enabled only then, and show as skipped otherwise.
    public static var trustsNewLogins: Bool {
        let environment = ProcessInfo.processInfo.environment
        let host = environment["PGHOST"] ?? ""
        return (environment["DATABASE_URL"] ?? "").isEmpty && (host.isEmpty || host.hasPrefix("/"))
    }

    /// Connection settings for the test server's administrator (who may create databases and
    /// roles). Without a server, settings that fail to connect with a socket path that says why.
    public static var settings: ConnectionSettings {
        switch try? server() {
        case .url(let url)?:
            return ConnectionSettings(connectionString: url, source: .databaseURL)
        case .localCluster?:
            if let local = ConnectionSettings.localCluster(in: packageRoot.path) { return local }
            fallthrough
        case nil:
            return ConnectionSettings(overrides: [("host", "/no-test-cluster-run-make-db-up"), ("port", "5432")])
        }
    }

    /// Environment for a child process (psql, keyline) that reaches database `name` of the test
    /// server. `DATABASE_URL` is always set (empty for the local cluster), so a value inherited
    /// from the shell never reaches the child.
    public static func environment(database name: String,
                                   environment: [String: String] = ProcessInfo.processInfo.environment) throws -> [String: String] {
        switch try server(environment: environment) {
        case .url(let url):
            return ["DATABASE_URL": url + (url.contains("?") ? "&" : "?") + "dbname=\(name)"]
        case .localCluster(let socket):
            return ["DATABASE_URL": "", "PGHOST": socket, "PGPORT": "5432", "PGUSER": "keyline", "PGDATABASE": name]
        }
    }
}

public struct TestPostgresUnavailable: Error, CustomStringConvertible {
    public var description: String {
        "no PostgreSQL for the tests: run `make db-up` (or `make test`), or set \(TestPostgres.urlVariable) to a server the tests may create databases and roles on"
    }
}
