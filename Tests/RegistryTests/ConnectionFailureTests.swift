import Foundation
import Testing
import TestSupport
@testable import Registry

/// Failed connections: what the error says (never a password), whether retrying can help, and
/// who may reach the local cluster at all.
@Suite("Connection failures")
struct ConnectionFailureTests {
    @Test("a malformed connection string is a settings error that shows it only with *** for the password")
    func malformedNeverShowsPassword() async throws {
        for url in ["postgresql://u:hunter2@[bad", "host=h password=hunter2 port='unterminated",
                    "host=h password='hun ter2' =broken"] {
            let settings = ConnectionSettings(connectionString: url, source: .databaseURL)
            await #expect {
                _ = try await PostgresConnection.connect(settings)
            } throws: { error in
                guard let error = error as? PostgresError else { return false }
                let text = error.description
                return error.kind == .invalidSettings && error.isConfigurationError && !error.isConnectionLoss
                    && text.contains("DATABASE_URL is not a valid URI or key=value conninfo")
                    && text.contains("***") && !text.contains("hunter2") && !text.contains("hun ter2")
            }
        }
        // Well-formed, but a value libpq refuses before trying any host: also a settings error.
        let badPort = ConnectionSettings(connectionString: "postgresql://u:hunter2@host:notaport:x/db", source: .databaseURL)
        await #expect {
            _ = try await PostgresConnection.connect(badPort)
        } throws: { error in
            guard let error = error as? PostgresError else { return false }
            return error.kind == .invalidSettings && error.isConfigurationError && error.message.contains("port")
                && !error.description.contains("hunter2")
        }
        #expect(ConnectionSettings.redacted("postgresql://u:hunter2@[bad") == "postgresql://u:***@[bad")
        #expect(ConnectionSettings.redacted("postgres://u:a@b@h/db?password=x&sslmode=require")
                == "postgres://u:***@h/db?password=***&sslmode=require")
        #expect(ConnectionSettings.redacted("host=h password = 'p w\\'x' dbname=d") == "host=h password=*** dbname=d")
        #expect(ConnectionSettings.redacted("host=h user=u") == "host=h user=u")
    }

    @Test("messages are scrubbed of every password the settings hold")
    func scrubbing() {
        let settings = ConnectionSettings(connectionString: "postgresql://u:url-secret@h/db",
                                          overrides: [("password", "override-secret")])
        let scrubbed = settings.scrubbingPasswords("a url-secret b override-secret c env-secret",
                                                   environment: ["PGPASSWORD": "env-secret"])
        #expect(scrubbed == "a *** b *** c ***")
    }

    @Test("an unreachable server is retryable and its message names where, never the password")
    func unreachableIsRetryable() async throws {
        let settings = ConnectionSettings(
            connectionString: "postgresql://keyline:hunter2-pw@/keyline?host=/nonexistent-socket-dir&connect_timeout=2",
            source: .databaseURL)
        await #expect {
            _ = try await PostgresConnection.connect(settings)
        } throws: { error in
            guard let error = error as? PostgresError else { return false }
            return error.kind == .connectionFailed && error.isConnectionLoss && !error.isConfigurationError
                && error.sqlState == nil && error.description.contains("/nonexistent-socket-dir")
                && !error.description.contains("hunter2-pw")
        }
    }

    @Test("connect_timeout still ends an attempt against a server that never answers")
    func connectTimeout() async throws {
        // A listening socket nobody accepts from: the kernel completes the TCP handshake, and
        // libpq then waits for an answer to its startup packet that never comes.
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(listener >= 0)
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(listener, pointer, length) == 0 && listen(listener, 4) == 0
                    && getsockname(listener, pointer, &length) == 0
            }
        }
        try #require(bound)
        let port = UInt16(bigEndian: address.sin_port)
        let settings = ConnectionSettings(
            connectionString: "host=127.0.0.1 port=\(port) dbname=x user=u password=timeout-secret sslmode=disable connect_timeout=2")
        let outcome = LockedBox<PostgresError?>(nil)
        let attempt = Task {
            do {
                _ = try await PostgresConnection.connect(settings)
            } catch {
                outcome.withValue { $0 = error as? PostgresError ?? PostgresError(kind: .decoding, message: "\(error)") }
            }
        }
        let deadline = Date().addingTimeInterval(60)
        while outcome.withValue({ $0 }) == nil, Date() < deadline { try await Task.sleep(for: .milliseconds(50)) }
        let error = try #require(outcome.withValue { $0 }, "connect did not give up within 60 s of a 2 s connect_timeout")
        #expect(error.kind == .connectionFailed && error.isConnectionLoss && !error.isConfigurationError)
        #expect(error.message.contains("timeout expired"), "\(error.message)")
        #expect(!error.description.contains("timeout-secret"))
        await attempt.value
    }

    @Test("a missing database (3D000) and an unknown role (28000) are configuration errors with their SQLSTATE")
    func refusedByServer() async throws {
        let missing = TestCluster.settings.with(database: "kl_missing_" + TestDatabase.randomSuffix())
        await #expect {
            _ = try await PostgresConnection.connect(missing)
        } throws: { error in
            guard let error = error as? PostgresError else { return false }
            return error.kind == .connectionFailed && error.sqlState == "3D000" && error.isConfigurationError
                && !error.isConnectionLoss && error.message.contains("does not exist")
                && !error.message.contains("LOCATION") && !error.message.contains(":  3D000:")
        }
        let unknownRole = TestCluster.settings.with(user: "kl_no_such_role_" + TestDatabase.randomSuffix(),
                                                    password: "role-secret")
        await #expect {
            _ = try await PostgresConnection.connect(unknownRole)
        } throws: { error in
            guard let error = error as? PostgresError else { return false }
            return error.kind == .connectionFailed && error.sqlState?.hasPrefix("28") == true
                && error.isConfigurationError && !error.isConnectionLoss && !error.description.contains("role-secret")
        }
        // And the connection that works still works after the polling connect.
        let connection = try await PostgresConnection.connect(TestCluster.settings)
        #expect(try await connection.query("SELECT 1 AS one")[0].decode("one", as: Int.self) == 1)
        await connection.close()
    }

    @Test("the local cluster's socket is reachable by its owner only (trust authentication)")
    func localClusterSocketIsPrivate() async throws {
        guard let socketDirectory = ConnectionSettings.localClusterSocket(in: TestCluster.packageRoot.path) else {
            return  // KEYLINE_TEST_DATABASE_URL: no local cluster to check
        }
        let folderMode = try #require(try FileManager.default.attributesOfItem(atPath: socketDirectory)[.posixPermissions] as? Int)
        let socketMode = try #require(try FileManager.default.attributesOfItem(
            atPath: socketDirectory + "/.s.PGSQL.5432")[.posixPermissions] as? Int)
        #expect(folderMode & 0o077 == 0, "socket folder mode \(String(folderMode, radix: 8))")
        #expect(socketMode & 0o077 == 0, "socket mode \(String(socketMode, radix: 8))")
        // As root (make test's usual case): another local user is refused.
        guard getuid() == 0, let runuser = ["/usr/sbin/runuser", "/sbin/runuser"]
            .first(where: FileManager.default.isExecutableFile(atPath:)) else { return }
        let asNobody = try await ChildProcess.run(runuser, ["-u", "nobody", "--", "psql", "-X", "-h", socketDirectory,
                                                             "-U", "keyline", "-d", "keyline", "-Atc", "SELECT 1"],
                                                 in: URL(fileURLWithPath: "/"), timeout: .seconds(60))
        #expect(asNobody.status != 0, "user nobody connected to the local cluster as superuser")
    }
}
