import CLibPQ
import Dispatch
import Foundation

/// One libpq connection, used from one serial dispatch queue of its own.
///
/// libpq calls block (network round trips, COMMIT waiting for the WAL flush), so they never run on
/// Swift's cooperative pool: every call is dispatched to `queue` and bridged back to async code
/// with a continuation. The `PGconn` is touched only on that queue, which is what makes the class
/// safe to share (`@unchecked Sendable`). Several stations share one database, each with its own
/// connections; open one connection per concurrent worker that needs the database.
///
/// Reconnecting: before each statement or transaction the connection checks whether the server
/// has closed it while it was idle (restart, `pg_terminate_backend`, idle timeout) and resets it
/// if so; that is safe because nothing was in flight. A transaction that loses its connection
/// before COMMIT is run again on a fresh connection (PostgreSQL rolled it back); one that loses it
/// during COMMIT fails with `.commitOutcomeUnknown`.
public final class PostgresConnection: @unchecked Sendable {
    public let settings: ConnectionSettings
    private let queue: DispatchQueue
    // Only touched on `queue`.
    private var handle: OpaquePointer?
    private var reconnectCount = 0
    private let notices = NoticeFlags()

    /// Marks the connection's queue, so code (and tests) can tell that they run on it.
    static let queueKey = DispatchSpecificKey<String>()

    private init(settings: ConnectionSettings, label: String) {
        self.settings = settings
        self.queue = DispatchQueue(label: label, qos: .userInitiated)
        queue.setSpecific(key: Self.queueKey, value: label)
    }

    deinit {
        // No work can be queued any more (every queued closure holds `self`).
        if let handle { PQfinish(handle) }
    }

    /// Opens a connection. Throws `PostgresError` (`.connectionFailed`) naming where it tried.
    public static func connect(_ settings: ConnectionSettings,
                               label: String = "keyline.postgres") async throws -> PostgresConnection {
        try settings.validate()
        let connection = PostgresConnection(settings: settings, label: label)
        try await connection.onQueue { try connection.openIfNeeded() }
        return connection
    }

    /// Closes the connection; a later call opens a new one.
    public func close() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            queue.async {
                if let handle = self.handle { PQfinish(handle) }
                self.handle = nil
                continuation.resume()
            }
        }
    }

    /// How many times the connection has been re-established after being lost.
    public var reconnects: Int {
        get async { (try? await onQueue { self.reconnectCount }) ?? 0 }
    }

    /// Runs one parameterized statement in its own implicit transaction and returns its rows.
    @discardableResult
    public func query(_ sql: String, _ parameters: [any PostgresEncodable] = []) async throws -> [PostgresRow] {
        let values = parameters.map(\.postgresValue)
        return try await onQueue {
            try self.ensureLive()
            return try self.run(sql, values).rows
        }
    }

    /// Runs one parameterized statement and returns the number of rows it affected.
    @discardableResult
    public func execute(_ sql: String, _ parameters: [any PostgresEncodable] = []) async throws -> Int {
        let values = parameters.map(\.postgresValue)
        return try await onQueue {
            try self.ensureLive()
            return try self.run(sql, values).affectedRows
        }
    }

    /// Runs `body` inside BEGIN … COMMIT on the connection's own queue and returns its value.
    ///
    /// `body` is synchronous: it runs on the connection's thread and issues statements through
    /// `PostgresTransaction`. If it throws, the transaction is rolled back and the error rethrown.
    /// `body` may run more than once — after a lost connection, a serialization failure or a
    /// deadlock — so it should have no effects outside the database.
    public func transaction<T: Sendable>(
        isolation: TransactionIsolation = .readCommitted,
        _ body: @escaping @Sendable (PostgresTransaction) throws -> T
    ) async throws -> T {
        try await onQueue { try self.runTransaction(isolation: isolation, body) }
    }

    // MARK: - On the queue

    func onQueue<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            queue.async { continuation.resume(with: Result { try work() }) }
        }
    }

    private static let maximumAttempts = 4

    private func runTransaction<T>(isolation: TransactionIsolation,
                                   _ body: (PostgresTransaction) throws -> T) throws -> T {
        var attempt = 1
        while true {
            do {
                return try runTransactionOnce(isolation: isolation, body)
            } catch let error as PostgresError
                where (error.kind == .connectionLost || error.isRetryableConflict) && attempt < Self.maximumAttempts {
                attempt += 1
                if error.isRetryableConflict { Thread.sleep(forTimeInterval: 0.005 * Double(attempt)) }
            }
        }
    }

    private func runTransactionOnce<T>(isolation: TransactionIsolation,
                                       _ body: (PostgresTransaction) throws -> T) throws -> T {
        try ensureLive()
        try run("BEGIN ISOLATION LEVEL \(isolation.rawValue)", [])
        let transaction = PostgresTransaction(connection: self)
        let value: T
        do {
            value = try body(transaction)
        } catch {
            transaction.isOpen = false
            rollbackQuietly()
            throw error
        }
        transaction.isOpen = false
        if let handle, PQtransactionStatus(handle) == PQTRANS_INERROR {
            rollbackQuietly()
            throw PostgresError(kind: .transactionAborted,
                                message: "a statement failed inside the transaction and its error was caught")
        }
        do {
            try run("COMMIT", [])
        } catch let error as PostgresError where error.isConnectionLoss {
            var unknown = error
            unknown.kind = .commitOutcomeUnknown
            throw unknown
        }
        return value
    }

    func rollbackQuietly() {
        guard let handle, PQstatus(handle) == CONNECTION_OK else { return }
        if let result = PQexec(handle, "ROLLBACK") { PQclear(result) }
    }

    /// Opens the connection on first use.
    private func openIfNeeded() throws {
        guard handle == nil else { return }
        var keywords: [String] = []
        var values: [String] = []
        keywords.append("fallback_application_name"); values.append("keyline")
        if !settings.connectionString.isEmpty {
            // expand_dbname: libpq parses this first dbname as a URI or conninfo string.
            keywords.append("dbname"); values.append(settings.connectionString)
        }
        for (keyword, value) in settings.overrides {
            keywords.append(keyword); values.append(value)
        }
        let connection = withCStrings(keywords) { keywordPointers in
            withCStrings(values) { valuePointers in
                PQconnectStartParams(keywordPointers, valuePointers, 1)
            }
        }
        guard let connection else {
            throw PostgresError(kind: .connectionFailed, message: "libpq could not allocate a connection")
        }
        let refusedAtStart = PQstatus(connection) == CONNECTION_BAD
        let timedOut = Self.completeConnecting(connection)
        guard !timedOut, PQstatus(connection) == CONNECTION_OK else {
            var (sqlState, message) = Self.startupError(connection)
            if timedOut {
                sqlState = nil
                message = "timeout expired" + (message == "unknown libpq error" ? "" : "; \(message)")
            }
            PQfinish(connection)
            // libpq checks option values (port, sslmode, host/port counts ...) before it tries
            // any host; those messages start "invalid …" or "could not match …" (fe-connect.c).
            let invalidOption = refusedAtStart && (message.hasPrefix("invalid ") || message.hasPrefix("could not match ")
                || message.contains(" invalid when "))
            throw PostgresError(kind: invalidOption ? .invalidSettings : .connectionFailed, sqlState: sqlState,
                                message: settings.scrubbingPasswords("\(message) [\(settings)]"))
        }
        PQsetErrorVerbosity(connection, PQERRORS_DEFAULT)
        // Notices are not printed. libpq hands an error that arrives while the connection is idle
        // (the server's FATAL before it closes the connection) to the notice receiver: remember it.
        notices.fatalWhileIdle = false
        PQsetNoticeReceiver(connection, { argument, result in
            guard let argument, let result, let severity = PQresultErrorField(result, Int32(UInt8(ascii: "V"))) else { return }
            let level = String(cString: severity)
            if level == "FATAL" || level == "PANIC" {
                Unmanaged<NoticeFlags>.fromOpaque(argument).takeUnretainedValue().fatalWhileIdle = true
            }
        }, Unmanaged.passUnretained(notices).toOpaque())
        handle = connection
        try configureSession()
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
    private static func completeConnecting(_ connection: OpaquePointer) -> Bool {
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
    private static func startupError(_ connection: OpaquePointer) -> (sqlState: String?, message: String) {
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

    /// Timestamps come back in UTC ISO format whatever the server's or login's defaults are.
    private func configureSession() throws {
        try run("SELECT set_config('TimeZone', 'UTC', false), set_config('DateStyle', 'ISO, YMD', false)", [])
    }

    /// Makes sure an idle connection is still there; reconnects if the server closed it.
    func ensureLive() throws {
        guard let handle else { return try openIfNeeded() }
        // The server closes an idle connection by sending an error and then EOF: the socket turns
        // readable while nothing is pending. Consume until it is quiet (an asynchronous notice or
        // parameter report keeps the connection) or libpq sees the end (reconnect).
        // (PQconsumeInput only reads; PQnotifies parses, which is when a FATAL reaches the receiver.)
        var rounds = 0
        while PQstatus(handle) == CONNECTION_OK, !notices.fatalWhileIdle, rounds < 16 {
            var descriptor = pollfd(fd: PQsocket(handle), events: Int16(POLLIN), revents: 0)
            if poll(&descriptor, 1, 0) <= 0 { return }
            if PQconsumeInput(handle) == 0 { return try reset() }
            while let notice = PQnotifies(handle) { PQfreemem(notice) }
            rounds += 1
        }
        if PQstatus(handle) == CONNECTION_OK, !notices.fatalWhileIdle, rounds < 16 { return }
        try reset()
    }

    private func reset() throws {
        if let handle { PQfinish(handle) }
        handle = nil
        try openIfNeeded()
        reconnectCount += 1
    }

    struct StatementResult {
        var rows: [PostgresRow]
        var affectedRows: Int
    }

    /// One statement through PQexecParams: parameters travel separately from the SQL text.
    @discardableResult
    func run(_ sql: String, _ parameters: [PostgresValue]) throws -> StatementResult {
        guard let handle else {
            throw PostgresError(kind: .connectionLost, message: "not connected", statement: Self.firstLine(sql))
        }
        // bytea goes in binary (format 1, type oid 17); everything else as text with the type
        // inferred by the server from the statement.
        var types: [Oid] = []
        var formats: [Int32] = []
        var lengths: [Int32] = []
        var buffers: [[CChar]?] = []
        for parameter in parameters {
            switch parameter {
            case .null:
                types.append(0); formats.append(0); lengths.append(0); buffers.append(nil)
            case .text(let text):
                types.append(0); formats.append(0); lengths.append(0); buffers.append(Array(text.utf8CString))
            case .bytea(let bytes):
                types.append(17); formats.append(1); lengths.append(Int32(bytes.count))
                buffers.append(bytes.isEmpty ? [0] : bytes.map { CChar(bitPattern: $0) })
            }
        }
        let result = withBufferPointers(buffers) { pointers in
            PQexecParams(handle, sql, Int32(parameters.count), types, pointers, lengths, formats, 0)
        }
        defer { PQclear(result) }
        return try Self.collect(result, connection: handle, sql: sql)
    }

    /// A multi-statement script without parameters. Only migrations use it: their SQL comes from
    /// `schema/`, never from data.
    func runScript(_ sql: String) throws {
        guard let handle else { throw PostgresError(kind: .connectionLost, message: "not connected") }
        let result = PQexec(handle, sql)
        defer { PQclear(result) }
        _ = try Self.collect(result, connection: handle, sql: sql)
    }

    private static func collect(_ result: OpaquePointer?, connection: OpaquePointer, sql: String) throws -> StatementResult {
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
            return StatementResult(rows: rows, affectedRows: Int(rowCount))
        case PGRES_COMMAND_OK, PGRES_EMPTY_QUERY:
            let affected = Int(String(cString: PQcmdTuples(result))) ?? 0
            return StatementResult(rows: [], affectedRows: affected)
        default:
            throw error(from: result, connection: connection, sql: sql)
        }
    }

    private static func error(from result: OpaquePointer?, connection: OpaquePointer, sql: String) -> PostgresError {
        func field(_ code: Character) -> String? {
            guard let result, let value = PQresultErrorField(result, Int32(code.asciiValue!)) else { return nil }
            return String(cString: value)
        }
        let sqlState = field("C")
        let lost = PQstatus(connection) != CONNECTION_OK
        let message = field("M") ?? errorMessage(connection)
        let kind: PostgresError.Kind = lost ? .connectionLost : .server
        return PostgresError(kind: kind, sqlState: sqlState, message: message, detail: field("D"), hint: field("H"),
                             constraint: field("n"), table: field("t"), column: field("c"),
                             statement: firstLine(sql))
    }

    private static func errorMessage(_ connection: OpaquePointer) -> String {
        guard let message = PQerrorMessage(connection) else { return "unknown libpq error" }
        let lines = String(cString: message).split(separator: "\n")
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        return lines.isEmpty ? "unknown libpq error" : lines.joined(separator: "; ")
    }

    private static func firstLine(_ sql: String) -> String {
        let line = sql.split(separator: "\n", omittingEmptySubsequences: true).first.map(String.init) ?? sql
        let trimmed = line.trimmingCharacters(in: .whitespaces)
        return trimmed.count > 120 ? String(trimmed.prefix(120)) + "…" : trimmed
    }
}

/// Set by libpq's notice receiver on the connection's queue (libpq calls it from within the
/// libpq call that reads the message), read on the same queue.
private final class NoticeFlags: @unchecked Sendable {
    var fatalWhileIdle = false
}

/// Transaction isolation levels (PostgreSQL documentation, "Transaction Isolation").
public enum TransactionIsolation: String, Sendable {
    case readCommitted = "READ COMMITTED"
    case repeatableRead = "REPEATABLE READ"
    case serializable = "SERIALIZABLE"
}

/// Statements inside `PostgresConnection.transaction`. Valid only during the body, on its thread.
public final class PostgresTransaction {
    private let connection: PostgresConnection
    var isOpen = true

    init(connection: PostgresConnection) {
        self.connection = connection
    }

    /// Runs one parameterized statement and returns its rows.
    @discardableResult
    public func query(_ sql: String, _ parameters: [any PostgresEncodable] = []) throws -> [PostgresRow] {
        try checkOpen()
        return try connection.run(sql, parameters.map(\.postgresValue)).rows
    }

    /// Runs one parameterized statement and returns the number of rows it affected.
    @discardableResult
    public func execute(_ sql: String, _ parameters: [any PostgresEncodable] = []) throws -> Int {
        try checkOpen()
        return try connection.run(sql, parameters.map(\.postgresValue)).affectedRows
    }

    /// Exactly one row, or `nil` when there is none.
    public func queryOne(_ sql: String, _ parameters: [any PostgresEncodable] = []) throws -> PostgresRow? {
        try query(sql, parameters).first
    }

    /// Savepoint around `body`: a failed statement inside it rolls back only to the savepoint, so
    /// the transaction can go on (e.g. to look up what a unique violation collided with).
    public func savepoint<T>(_ body: () throws -> T) throws -> T {
        try execute("SAVEPOINT keyline_savepoint")
        do {
            let value = try body()
            try execute("RELEASE SAVEPOINT keyline_savepoint")
            return value
        } catch {
            if let postgres = error as? PostgresError, postgres.isConnectionLoss { throw error }
            try execute("ROLLBACK TO SAVEPOINT keyline_savepoint")
            try execute("RELEASE SAVEPOINT keyline_savepoint")
            throw error
        }
    }

    func runScript(_ sql: String) throws {
        try checkOpen()
        try connection.runScript(sql)
    }

    private func checkOpen() throws {
        guard isOpen else {
            throw PostgresError(kind: .server, message: "a PostgresTransaction was used after its transaction ended")
        }
    }
}

private func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    let buffers = strings.map { Array($0.utf8CString) }
    return withBufferPointers(buffers.map { Optional($0) }) { pointers in
        // NULL-terminated array, as PQconnectdbParams requires.
        var terminated = Array(UnsafeBufferPointer(start: pointers, count: strings.count))
        terminated.append(nil)
        return terminated.withUnsafeBufferPointer { body($0.baseAddress!) }
    }
}

/// Pins every buffer for the duration of `body` and passes C pointers to them (nil for NULL).
private func withBufferPointers<R>(_ buffers: [[CChar]?], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    var pointers: [UnsafePointer<CChar>?] = []
    var index = 0
    func pin() -> R {
        if index == buffers.count {
            if pointers.isEmpty { pointers.append(nil) }
            return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
        }
        guard let buffer = buffers[index] else {
            pointers.append(nil)
            index += 1
            return pin()
        }
        index += 1
        return buffer.withUnsafeBufferPointer { pointer in
            pointers.append(pointer.baseAddress)
            return pin()
        }
    }
    return pin()
}
