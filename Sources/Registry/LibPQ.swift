import CLibPQ
import Foundation

/// libpq's C side, stateless: completing a connection attempt, reading results and errors,
/// passing parameter arrays. A `PostgresConnection` calls these on its own queue.
enum LibPQ {
    /// TCP keepalives and a user timeout on every connection, placed before the connection string
    /// so a URL's or an override's own values win. Without them a primary that vanished (a crash,
    /// a failover, a pulled cable) leaves a waiting connection blocked until the kernel gives up,
    /// about 15 minutes (tcp_retries2): a listener that never reconnects, a lease check that holds
    /// up a stop. Unix sockets ignore them.
    static let deadPeerDetection: [(keyword: String, value: String)] = [
        ("keepalives", "1"), ("keepalives_idle", "10"), ("keepalives_interval", "5"), ("keepalives_count", "3"),
        ("tcp_user_timeout", "30000"),
    ]

    /// The same on the server's side of every TCP connection (the settings are the session's own,
    /// any login may set them; a Unix socket ignores them). The client's keepalives do not reach
    /// the server: a station that lost power never closes its connection, and the server would
    /// keep its session, and the job lease's advisory lock with it, for 15 minutes to 2 hours
    /// (its kernel's defaults), so a restarted station could not take its own job back. With them
    /// the server drops the session about 25 s after the station went silent.
    /// (`tcp_user_timeout` is PostgreSQL 12 and later; an older server refuses the statement,
    /// which is then left out: it changes nothing else.)
    static let serverDeadPeerDetection = """
        SELECT set_config('tcp_keepalives_idle', '10', false), set_config('tcp_keepalives_interval', '5', false),
               set_config('tcp_keepalives_count', '3', false), set_config('tcp_user_timeout', '30000', false)
        """

    /// Starts connecting with `settings` (PQconnectStartParams, expand_dbname): the application
    /// name as a fallback and the dead-peer detection first, then the connection string (parsed
    /// as a URI or conninfo), then the overrides, so what the settings say wins. Nil when libpq
    /// could not allocate a connection.
    static func startConnecting(_ settings: ConnectionSettings, applicationName: String) -> OpaquePointer? {
        var parameters = [(keyword: "fallback_application_name", value: applicationName)] + deadPeerDetection
        if !settings.connectionString.isEmpty { parameters.append(("dbname", settings.connectionString)) }
        parameters += settings.overrides
        return withCStrings(parameters.map(\.keyword)) { keywords in
            withCStrings(parameters.map(\.value)) { values in PQconnectStartParams(keywords, values, 1) }
        }
    }

    /// Drives a connection started with PQconnectStartParams to success or failure.
    ///
    /// keyline polls instead of calling PQconnectdbParams so that it can ask for verbose errors
    /// first: then the server's refusal carries its SQLSTATE (28P01 bad password, 3D000 no such
    /// database ...), which libpq has no other way to hand out for a failed connection. libpq
    /// leaves `connect_timeout` to the caller when polling (libpq docs, "PQconnectStartParams"):
    /// it applies here to each host in turn, as in PQconnectdbParams, but a host that times out
    /// ends the attempt rather than moving on to the next one.
    /// Returns whether it gave up because `connect_timeout` passed.
    static func completeConnecting(_ connection: OpaquePointer) -> Bool {
        guard PQstatus(connection) != CONNECTION_BAD else { return false }
        PQsetErrorVerbosity(connection, PQERRORS_VERBOSE)
        var timeout: Double?
        if let options = PQconninfo(connection) {
            var option = options
            while let keyword = option.pointee.keyword {
                if String(cString: keyword) == "connect_timeout", let value = option.pointee.val,
                   let seconds = Int(String(cString: value)), seconds > 0 {
                    timeout = Double(max(seconds, 2))  // libpq treats 1 as 2
                }
                option += 1
            }
            PQconninfoFree(options)
        }
        func currentHost() -> String {
            (PQhost(connection).map { String(cString: $0) } ?? "") + ":" + (PQport(connection).map { String(cString: $0) } ?? "")
        }
        var host = currentHost()
        var deadline = timeout.map { Date().addingTimeInterval($0) }
        var state = PGRES_POLLING_WRITING
        while state != PGRES_POLLING_OK && state != PGRES_POLLING_FAILED {
            let socket = PQsocket(connection)
            if socket >= 0 {
                var descriptor = pollfd(fd: socket, events: Int16(state == PGRES_POLLING_READING ? POLLIN : POLLOUT), revents: 0)
                let wait = deadline.map { Int32(max(0, min($0.timeIntervalSinceNow * 1000, 1000))) } ?? 1000
                let ready = poll(&descriptor, 1, wait)
                if ready < 0, errno != EINTR { break }
                if ready <= 0 {
                    if let deadline, deadline.timeIntervalSinceNow <= 0 { break }
                    continue
                }
            }
            state = PQconnectPoll(connection)
            let now = currentHost()
            if now != host { host = now; deadline = timeout.map { Date().addingTimeInterval($0) } }
        }
        // Still in progress: the deadline passed (PQconnectdbParams says "timeout expired" too).
        return state != PGRES_POLLING_OK && PQstatus(connection) != CONNECTION_BAD
    }

    /// The SQLSTATE of a failed connection, if the server sent one, and libpq's message without
    /// the verbose extras (SQLSTATE prefix, LOCATION lines).
    static func startupError(_ connection: OpaquePointer) -> (sqlState: String?, message: String) {
        let raw = PQerrorMessage(connection).map { String(cString: $0) } ?? ""
        var sqlState: String?
        var lines: [String] = []
        for line in raw.split(separator: "\n") {
            var text = line.trimmingCharacters(in: .whitespaces)
            if text.isEmpty || text.hasPrefix("LOCATION:") { continue }
            // "…failed: FATAL:  28P01: password authentication failed…": severity, two spaces, code.
            if let range = text.range(of: #":  [0-9A-Z]{5}: "#, options: .regularExpression) {
                sqlState = String(text[text.index(range.lowerBound, offsetBy: 3)..<text.index(range.lowerBound, offsetBy: 8)])
                text.replaceSubrange(range, with: ":  ")
            }
            lines.append(text)
        }
        if lines.isEmpty { lines = ["unknown libpq error"] }
        return (sqlState, lines.joined(separator: "; "))
    }

    static func collect(_ result: OpaquePointer?, connection: OpaquePointer, sql: String) throws -> PostgresConnection.StatementResult {
        guard let result else {
            throw error(from: nil, connection: connection, sql: sql)
        }
        switch PQresultStatus(result) {
        case PGRES_TUPLES_OK, PGRES_SINGLE_TUPLE:
            let columnCount = PQnfields(result)
            let columns = (0..<columnCount).map { String(cString: PQfname(result, $0)) }
            let rowCount = PQntuples(result)
            var rows: [PostgresRow] = []
            rows.reserveCapacity(Int(rowCount))
            for row in 0..<rowCount {
                let values: [String?] = (0..<columnCount).map { column in
                    PQgetisnull(result, row, column) == 1 ? nil : String(cString: PQgetvalue(result, row, column))
                }
                rows.append(PostgresRow(columns: columns, values: values))
            }
            return PostgresConnection.StatementResult(rows: rows, affectedRows: Int(rowCount))
        case PGRES_COMMAND_OK, PGRES_EMPTY_QUERY:
            let affected = Int(String(cString: PQcmdTuples(result))) ?? 0
            return PostgresConnection.StatementResult(rows: [], affectedRows: affected)
        default:
            throw error(from: result, connection: connection, sql: sql)
        }
    }

    static func error(from result: OpaquePointer?, connection: OpaquePointer, sql: String) -> PostgresError {
        func field(_ code: Character) -> String? {
            guard let result, let value = PQresultErrorField(result, Int32(code.asciiValue!)) else { return nil }
            return String(cString: value)
        }
        let sqlState = field("C")
        // Every error the server sends carries a SQLSTATE; one without is libpq's own. When the
        // connection broke ("server closed the connection unexpectedly": a failed send leaves
        // PQstatus at CONNECTION_OK, as seen when the primary is stopped mid-batch,
        // RegistryFailoverTests), reading from it now fails: that is a lost connection, not a
        // refusal of the statement. libpq's other errors (out of memory, too many parameters)
        // leave a connection that still reads, and stay errors of the statement.
        let lost = PQstatus(connection) != CONNECTION_OK
            || (sqlState == nil && (PQconsumeInput(connection) == 0 || PQstatus(connection) != CONNECTION_OK))
        let message = field("M") ?? errorMessage(connection)
        let kind: PostgresError.Kind = lost ? .connectionLost : .server
        return PostgresError(kind: kind, sqlState: sqlState, message: message, detail: field("D"), hint: field("H"),
                             constraint: field("n"), table: field("t"), column: field("c"),
                             statement: firstLine(sql))
    }

    static func errorMessage(_ connection: OpaquePointer) -> String {
        guard let message = PQerrorMessage(connection) else { return "unknown libpq error" }
        let lines = String(cString: message).split(separator: "\n")
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        return lines.isEmpty ? "unknown libpq error" : lines.joined(separator: "; ")
    }

    static func firstLine(_ sql: String) -> String {
        let line = sql.split(separator: "\n", omittingEmptySubsequences: true).first.map(String.init) ?? sql
        let trimmed = line.trimmingCharacters(in: .whitespaces)
        return trimmed.count > 120 ? String(trimmed.prefix(120)) + "…" : trimmed
    }
}

func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    let buffers = strings.map { Array($0.utf8CString) }
    return withBufferPointers(buffers.map { Optional($0) }) { pointers in
        // NULL-terminated array, as PQconnectdbParams requires.
        var terminated = Array(UnsafeBufferPointer(start: pointers, count: strings.count))
        terminated.append(nil)
        return terminated.withUnsafeBufferPointer { body($0.baseAddress!) }
    }
}

/// Passes C pointers to every buffer (nil for NULL) for the duration of `body`.
///
/// The buffers are copied back to back into one allocation, so the pointers stay valid with no
/// nesting per buffer: pinning each in a closure of its own overflowed the stack of a connection's
/// thread at tens of thousands of parameters.
func withBufferPointers<R>(_ buffers: [[CChar]?], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    var storage: [CChar] = []
    storage.reserveCapacity(buffers.reduce(1) { $0 + ($1?.count ?? 0) })
    var offsets: [Int?] = []
    offsets.reserveCapacity(buffers.count)
    for buffer in buffers {
        guard let buffer else {
            offsets.append(nil)
            continue
        }
        offsets.append(storage.count)
        storage.append(contentsOf: buffer)
    }
    // Never empty: an empty array may have no address, and an empty (not NULL) value needs one.
    storage.append(0)
    return storage.withUnsafeBufferPointer { base in
        var pointers: [UnsafePointer<CChar>?] = offsets.map { offset in offset.map { base.baseAddress! + $0 } }
        if pointers.isEmpty { pointers.append(nil) }
        return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
    }
}
