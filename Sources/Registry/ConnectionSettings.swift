import CLibPQ
import Foundation

/// Where and how to connect to PostgreSQL.
///
/// The settings are a libpq connection string (a `postgresql://` URI or `key=value` conninfo, as
/// `DATABASE_URL` holds) plus keyword overrides applied after it. Anything left unset is filled in
/// by libpq itself from its `PG*` environment variables, `~/.pgpass` and service files, so
/// multi-host failover, `sslmode` and friends work without keyline knowing about them.
public struct ConnectionSettings: Sendable, CustomStringConvertible {
    /// Where the settings came from, for messages.
    public enum Source: Sendable, Equatable {
        /// `DATABASE_URL`.
        case databaseURL
        /// libpq's own `PGHOST`/`PGHOSTADDR`/`PGSERVICE` variables (or its defaults).
        case libpqEnvironment
        /// The private cluster `make db-up` runs, found by its socket folder.
        case localCluster(socketDirectory: String)
        /// Built in code.
        case explicit
    }

    /// libpq connection string: URI or conninfo; empty means libpq's defaults and `PG*` variables.
    public var connectionString: String
    /// Keywords applied after `connectionString`, in order (libpq keeps the last value).
    public var overrides: [(keyword: String, value: String)]
    public var source: Source

    public init(connectionString: String = "", overrides: [(keyword: String, value: String)] = [],
                source: Source = .explicit) {
        self.connectionString = connectionString
        self.overrides = overrides
        self.source = source
    }

    /// The superuser and database `make db-up` creates in the private cluster.
    public static let localClusterUser = "keyline"
    public static let localClusterDatabase = "keyline"
    /// Folder of the private cluster, relative to the project: data in `data/`, socket in `socket/`.
    public static let localClusterFolder = ".pgdata"

    /// Resolves the settings the way every keyline command does: `DATABASE_URL` if set; otherwise
    /// libpq's own `PG*` variables and defaults.
    ///
    /// The private cluster of `make db-up` is never found on its own (it once was, by walking up
    /// from the working directory): a station run from inside a checkout would quietly have used
    /// the development superuser cluster. `make demo`, `make test` and the benchmarks ask for it
    /// explicitly, with `PGHOST` (`make db-env`) or `localCluster(in:)`.
    public static func fromEnvironment(
        _ environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> ConnectionSettings {
        if let url = environment["DATABASE_URL"], !url.isEmpty {
            return ConnectionSettings(connectionString: url, source: .databaseURL)
        }
        return ConnectionSettings(source: .libpqEnvironment)
    }

    /// The private cluster `make db-up` runs in `projectDirectory/.pgdata` (exactly there, never a
    /// parent), as its superuser and database, or nil when its socket does not exist. For the
    /// tests and benchmarks of a checkout, which name the cluster they started.
    public static func localCluster(in projectDirectory: String) -> ConnectionSettings? {
        guard let socketDirectory = localClusterSocket(in: projectDirectory) else { return nil }
        return ConnectionSettings(
            overrides: [("host", socketDirectory), ("port", "5432"),
                        ("user", localClusterUser), ("dbname", localClusterDatabase)],
            source: .localCluster(socketDirectory: socketDirectory))
    }

    /// The socket folder of a running private cluster in `projectDirectory`, with symbolic links
    /// resolved (the folder may live in /tmp when the project path is long or not readable by the
    /// `postgres` user, and socket paths are limited to 107 bytes).
    public static func localClusterSocket(in projectDirectory: String) -> String? {
        let socket = URL(fileURLWithPath: projectDirectory, isDirectory: true).standardizedFileURL
            .appendingPathComponent(localClusterFolder).appendingPathComponent("socket")
        let resolved = socket.resolvingSymlinksInPath().path
        return FileManager.default.fileExists(atPath: resolved + "/.s.PGSQL.5432") ? resolved : nil
    }

    /// A copy that connects as another login or to another database (tests, benchmarks, CLI).
    public func with(database: String? = nil, user: String? = nil, password: String? = nil) -> ConnectionSettings {
        var copy = self
        if let database { copy.overrides.append(("dbname", database)) }
        if let user { copy.overrides.append(("user", user)) }
        if let password { copy.overrides.append(("password", password)) }
        return copy
    }

    /// Checks the connection string's syntax without connecting.
    ///
    /// libpq's own parse message quotes the whole string, password included, so it is never
    /// shown: the error says what is wrong with a copy whose passwords are replaced by `***`.
    public func validate() throws(PostgresError) {
        guard !connectionString.isEmpty else { return }
        var errorMessage: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(connectionString, &errorMessage) else {
            if let errorMessage { PQfreemem(errorMessage) }
            throw PostgresError(kind: .invalidSettings,
                                message: "\(sourceName) is not a valid URI or key=value conninfo: "
                                    + Self.redacted(connectionString))
        }
        PQconninfoFree(options)
    }

    /// `text` with every password these settings hold (in the connection string, the overrides or
    /// PGPASSWORD) replaced by `***`: a last line of defence for messages that might quote one.
    func scrubbingPasswords(_ text: String,
                            environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        var passwords = overrides.filter { $0.keyword == "password" }.map(\.value)
        if !connectionString.isEmpty, let options = PQconninfoParse(connectionString, nil) {
            var option = options
            while let keyword = option.pointee.keyword {
                if String(cString: keyword) == "password", let value = option.pointee.val {
                    passwords.append(String(cString: value))
                }
                option += 1
            }
            PQconninfoFree(options)
        }
        if let password = environment["PGPASSWORD"] { passwords.append(password) }
        var scrubbed = text
        // Longest first, so a password containing a shorter one is replaced whole.
        for password in Set(passwords).filter({ !$0.isEmpty }).sorted(by: { $0.count > $1.count }) {
            scrubbed = scrubbed.replacingOccurrences(of: password, with: "***")
        }
        return scrubbed
    }

    /// A connection string, valid or not, with its passwords replaced by `***`: the password of
    /// a URI's user info (everything between the first `:` and the last `@` of the authority)
    /// and the value of every `password` parameter or keyword, quoted or not.
    public static func redacted(_ connectionString: String) -> String {
        let lowered = connectionString.lowercased()
        if let scheme = ["postgresql://", "postgres://"].first(where: { lowered.hasPrefix($0) }) {
            var rest = Substring(connectionString.dropFirst(scheme.count))
            var shown = String(connectionString.prefix(scheme.count))
            if let at = rest.lastIndex(of: "@") {
                let userInfo = rest[..<at]
                if let colon = userInfo.firstIndex(of: ":") {
                    shown += userInfo[..<colon] + ":***@"
                } else {
                    shown += userInfo + "@"
                }
                rest = rest[rest.index(after: at)...]
            }
            return shown + maskingPasswordValues(String(rest), separators: "&")
        }
        return maskingPasswordValues(connectionString, separators: " \t\n")
    }

    /// Replaces the value after each `password =` with `***`; an unquoted value ends at one of
    /// `separators`, a single-quoted one at its closing quote (or the end, if there is none).
    private static func maskingPasswordValues(_ text: String, separators: String) -> String {
        let characters = Array(text)
        var result = ""
        var index = 0
        let keyword = Array("password")
        while index < characters.count {
            let matches = index + keyword.count <= characters.count
                && String(characters[index..<index + keyword.count]).lowercased() == "password"
                && (index == 0 || !(characters[index - 1].isLetter || characters[index - 1] == "_"))
            guard matches else {
                result.append(characters[index])
                index += 1
                continue
            }
            var cursor = index + keyword.count
            while cursor < characters.count, characters[cursor] == " " { cursor += 1 }
            guard cursor < characters.count, characters[cursor] == "=" else {
                result += String(characters[index..<cursor])
                index = cursor
                continue
            }
            cursor += 1
            while cursor < characters.count, characters[cursor] == " " { cursor += 1 }
            result += "password=***"
            if cursor < characters.count, characters[cursor] == "'" {
                cursor += 1
                while cursor < characters.count, characters[cursor] != "'" {
                    cursor += characters[cursor] == "\\" ? 2 : 1
                }
                cursor = min(cursor + 1, characters.count)
            } else {
                while cursor < characters.count, !separators.contains(characters[cursor]) { cursor += 1 }
            }
            index = cursor
        }
        return result
    }

    var sourceName: String {
        switch source {
        case .databaseURL: "DATABASE_URL"
        case .libpqEnvironment: "libpq's PG* environment"
        case .localCluster: "the local cluster (make db-up)"
        case .explicit: "the connection settings"
        }
    }

    /// Host, port, database and user only; never the password or the full connection string.
    public var description: String {
        var fields: [String: String] = [:]
        if !connectionString.isEmpty, let options = PQconninfoParse(connectionString, nil) {
            var option = options
            while let keyword = option.pointee.keyword {
                if let value = option.pointee.val { fields[String(cString: keyword)] = String(cString: value) }
                option += 1
            }
            PQconninfoFree(options)
        }
        for (keyword, value) in overrides { fields[keyword] = value }
        let shown = ["host", "port", "dbname", "user"].compactMap { key in fields[key].map { "\(key)=\($0)" } }
        return shown.isEmpty ? "libpq defaults, from \(sourceName)" : shown.joined(separator: " ") + ", from \(sourceName)"
    }
}
