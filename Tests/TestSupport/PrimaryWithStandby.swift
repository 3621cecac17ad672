import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A PostgreSQL primary and a streaming standby of its own, for one test: two clusters under one
/// temporary folder, each listening only on a Unix socket of that folder (no TCP port to collide
/// with another test or another checkout), started with the Debian binaries `make db-up` uses.
///
/// Replication is synchronous (`synchronous_standby_names` names the standby, and
/// `synchronous_commit = on`): the primary acknowledges a COMMIT only once the standby has flushed
/// it. With asynchronous replication a commit the primary acknowledged can be missing on the
/// standby when it is promoted — a state write, an escrow record or a registration the station
/// believes done would be lost at failover. The invariant is that none is, so the test's registry
/// is replicated the way a factory's must be.
///
/// Use `PrimaryWithStandby.run { pair in … }`: both servers are stopped and the folder removed
/// when the body returns or throws.
public final class PrimaryWithStandby: Sendable {
    /// The standby's name on the primary (`application_name`), the one the primary waits for.
    public static let standbyName = "keyline_standby"
    /// The superuser both clusters are initialised with.
    public static let user = "keyline"

    public let root: URL
    public let database: String
    public var primarySocket: String { root.appendingPathComponent("primary-socket").path }
    public var standbySocket: String { root.appendingPathComponent("standby-socket").path }
    var primaryData: String { root.appendingPathComponent("primary").path }
    var standbyData: String { root.appendingPathComponent("standby").path }
    let bindir: String

    /// The libpq multi-host URL a station is given: the primary first, then the standby, each a
    /// percent-encoded socket folder; `target_session_attrs=read-write` makes libpq skip a server
    /// that is in recovery (the standby before its promotion) and the one that is down.
    public var url: String {
        let hosts = [primarySocket, standbySocket].map { Self.percentEncoded($0) + ":5432" }.joined(separator: ",")
        return "postgresql://\(hosts)/\(database)?user=\(Self.user)&target_session_attrs=read-write&connect_timeout=5"
    }

    /// The URL of one server only (for checks that must reach a given one).
    public func url(socket: String, database: String? = nil) -> String {
        "postgresql://\(Self.percentEncoded(socket)):5432/\(database ?? self.database)?user=\(Self.user)"
    }

    private init(root: URL, database: String, bindir: String) {
        self.root = root
        self.database = database
        self.bindir = bindir
    }

    /// Starts a primary with database `database`, a standby streaming from it synchronously, runs
    /// `body`, then stops both (also when `body` throws).
    public static func run<T: Sendable>(database: String = "keyline_ha",
                                        _ body: (PrimaryWithStandby) async throws -> T) async throws -> T {
        let pair = try await start(database: database)
        do {
            let value = try await body(pair)
            await pair.stop()
            return value
        } catch {
            await pair.stop()
            throw error
        }
    }

    static func start(database: String) async throws -> PrimaryWithStandby {
        // Socket paths are limited to 107 bytes: a short folder directly under /tmp.
        var template = Array("/tmp/kl-ha-XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) != nil }) else {
            throw PrimaryWithStandbyFailure("mkdtemp failed: errno \(errno)")
        }
        let root = URL(fileURLWithPath: String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        let pair = PrimaryWithStandby(root: root, database: database, bindir: try await Self.findBindir())
        do {
            try await pair.initialise()
            return pair
        } catch {
            await pair.stop()
            throw error
        }
    }

    private func initialise() async throws {
        for folder in [primarySocket, standbySocket] { try makePrivateFolders(folder) }
        if getuid() == 0 {  // PostgreSQL refuses to run as root: the folder is the postgres user's
            try await ChildProcess.run("chown", ["-R", "postgres:", root.path], timeout: .seconds(30)).requireSuccess()
        }
        try await postgres("initdb", ["-D", primaryData, "-U", Self.user, "--auth=trust", "--encoding=UTF8", "--no-locale"])
        try await startServer(data: primaryData, log: "primary", options: serverOptions(socket: primarySocket, extra: [
            "wal_level=replica", "max_wal_senders=4", "wal_keep_size=64MB",
            "synchronous_standby_names='\(Self.standbyName)'", "synchronous_commit=on",
        ]))
        // Replication over the primary's socket: initdb's trust rules allow local replication.
        try await postgres("pg_basebackup", ["-D", standbyData, "-R", "-X", "stream", "-c", "fast",
                                             "-h", primarySocket, "-p", "5432", "-U", Self.user])
        // The standby's own settings win over those copied from the primary: it waits for no
        // standby of its own once promoted (nothing would ever acknowledge its commits; a factory
        // attaches a new standby and names it then), and it names itself to the primary.
        try await startServer(data: standbyData, log: "standby", options: serverOptions(socket: standbySocket, extra: [
            "synchronous_standby_names=''", "hot_standby=on",
            "primary_conninfo='host=\(primarySocket) port=5432 user=\(Self.user) application_name=\(Self.standbyName)'",
        ]))
        try await psql(socket: primarySocket, database: "postgres", "CREATE DATABASE \(database)")
        // Synchronous before the test starts: every commit from here on is on the standby when acknowledged.
        try await waitUntil(deadline: .seconds(120), poll: .milliseconds(100), "the standby streaming synchronously") {
            let state = try await self.psql(socket: self.primarySocket, database: "postgres",
                "SELECT sync_state FROM pg_stat_replication WHERE application_name = '\(Self.standbyName)'")
            return state.trimmingCharacters(in: .whitespacesAndNewlines) == "sync"
        }
    }

    private func serverOptions(socket: String, extra: [String]) -> String {
        (["listen_addresses=''", "unix_socket_directories='\(socket)'", "unix_socket_permissions=0700",
          "max_connections=100"] + extra).map { "-c \($0)" }.joined(separator: " ")
    }

    /// Stops the primary the way a crash or power loss would (`pg_ctl stop -m immediate`: no
    /// checkpoint, every connection cut).
    public func stopPrimary() async throws {
        try await postgres("pg_ctl", ["-D", primaryData, "-m", "immediate", "-w", "-t", "60", "stop"])
    }

    /// Promotes the standby and waits until it accepts writes.
    public func promoteStandby() async throws {
        try await postgres("pg_ctl", ["-D", standbyData, "-w", "-t", "60", "promote"])
        try await waitUntil(deadline: .seconds(120), poll: .milliseconds(100), "the promoted standby out of recovery") {
            try await self.psql(socket: self.standbySocket, database: "postgres", "SELECT pg_is_in_recovery()")
                .trimmingCharacters(in: .whitespacesAndNewlines) == "f"
        }
    }

    /// Runs `sql` with psql on one server; returns its unaligned output.
    @discardableResult
    public func psql(socket: String, database: String? = nil, _ sql: String) async throws -> String {
        let result = try await ChildProcess.run(bindir + "/psql",
                                                ["-X", "-Atq", "-v", "ON_ERROR_STOP=1", "-h", socket, "-p", "5432",
                                                 "-U", Self.user, "-d", database ?? self.database, "-c", sql],
                                                unsetting: ["DATABASE_URL", "PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGSERVICE"],
                                                timeout: .seconds(120))
        guard result.status == 0 else { throw PrimaryWithStandbyFailure("psql on \(socket) failed: \(sql)\n\(result.stderr)") }
        return result.stdout
    }

    /// Stops both servers (immediately: their data is thrown away) and removes the folder.
    public func stop() async {
        for data in [primaryData, standbyData] where FileManager.default.fileExists(atPath: data + "/postmaster.pid") {
            try? await postgres("pg_ctl", ["-D", data, "-m", "immediate", "-w", "-t", "60", "stop"])
        }
        try? FileManager.default.removeItem(at: root)
    }

    /// The server logs, for a failing test's message.
    public var logs: String {
        ["primary.log", "standby.log"].map { name in
            "--- \(name)\n" + ((try? String(contentsOf: root.appendingPathComponent(name), encoding: .utf8)) ?? "").suffix(3000)
        }.joined(separator: "\n")
    }

    /// Starts the server of `data` and waits until it accepts connections (`pg_ctl -w`).
    ///
    /// The postmaster outlives pg_ctl and inherits its descriptors: were they ChildProcess's, the
    /// start would never return. So pg_ctl runs through `bash -c 'exec …'` with stdin from
    /// /dev/null, its own output appended to a file and nothing else open, and the server writes
    /// to its log (`-l`); nothing the postmaster holds leads back to this process.
    private func startServer(data: String, log: String, options: String) async throws {
        let serverLog = root.appendingPathComponent("\(log).log").path
        let pgctlOutput = root.appendingPathComponent("\(log).pg_ctl.out").path
        let pgctl = [bindir + "/pg_ctl", "-D", data, "-l", serverLog, "-w", "-t", "60", "-o", options, "start"]
        let command = getuid() == 0 ? ["runuser", "-u", "postgres", "--"] + pgctl : pgctl
        // Every descriptor above 2 is closed too: corelibs Foundation's Process learns that its
        // child has exited when the child's end of a socket pair closes, and a postmaster holding
        // that end would keep `waitUntilExit` waiting for as long as the server runs.
        let script = #"out=$1; shift; for fd in /proc/$$/fd/*; do n=${fd##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done; exec "$@" >>"$out" 2>&1 </dev/null"#
        let result = try await ChildProcess.run("/bin/bash", ["-c", script, "bash", pgctlOutput] + command,
                                                in: URL(fileURLWithPath: "/"), timeout: .seconds(180))
        guard result.status == 0 else {
            let output = (try? String(contentsOfFile: pgctlOutput, encoding: .utf8)) ?? ""
            throw PrimaryWithStandbyFailure("pg_ctl start of \(data) exited \(result.status)\n\(output)\n\(logs)")
        }
    }

    /// Runs a server program as the postgres user when this process is root (as `make db-up` does).
    private func postgres(_ program: String, _ arguments: [String]) async throws {
        let (executable, prefixed) = getuid() == 0
            ? ("runuser", ["-u", "postgres", "--", bindir + "/" + program] + arguments)
            : (bindir + "/" + program, arguments)
        let result = try await ChildProcess.run(executable, prefixed, in: URL(fileURLWithPath: "/"), timeout: .seconds(180))
        guard result.status == 0 else {
            throw PrimaryWithStandbyFailure("\(program) \(arguments.joined(separator: " ")) exited \(result.status)\n\(result.stderr)\n\(logs)")
        }
    }

    /// `pg_config --bindir`, else the newest /usr/lib/postgresql/*/bin (Makefile, db-up).
    static func findBindir() async throws -> String {
        if let config = try? await ChildProcess.run("pg_config", ["--bindir"], timeout: .seconds(30)), config.status == 0 {
            let path = config.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            if FileManager.default.isExecutableFile(atPath: path + "/initdb") { return path }
        }
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []
        for version in versions.sorted(by: { (Int($0) ?? 0) > (Int($1) ?? 0) }) {
            let path = "/usr/lib/postgresql/\(version)/bin"
            if FileManager.default.isExecutableFile(atPath: path + "/initdb") { return path }
        }
        throw PrimaryWithStandbyFailure("no initdb found (install the postgresql package: `make deps`)")
    }

    static func percentEncoded(_ path: String) -> String {
        path.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? path
    }
}

public struct PrimaryWithStandbyFailure: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
