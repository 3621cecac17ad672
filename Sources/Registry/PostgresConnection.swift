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
        let connection = LibPQ.startConnecting(settings, applicationName: "keyline")
        guard let connection else {
            throw PostgresError(kind: .connectionFailed, message: "libpq could not allocate a connection")
        }
        let refusedAtStart = PQstatus(connection) == CONNECTION_BAD
        let timedOut = LibPQ.completeConnecting(connection)
        guard !timedOut, PQstatus(connection) == CONNECTION_OK else {
            var (sqlState, message) = LibPQ.startupError(connection)
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

    /// Timestamps come back in UTC ISO format whatever the server's or login's defaults are; the
    /// server finds a vanished station's session dead (`LibPQ.serverDeadPeerDetection`).
    private func configureSession() throws {
        try run("SELECT set_config('TimeZone', 'UTC', false), set_config('DateStyle', 'ISO, YMD', false)", [])
        _ = try? run(LibPQ.serverDeadPeerDetection, [])
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
            throw PostgresError(kind: .connectionLost, message: "not connected", statement: LibPQ.firstLine(sql))
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
        return try LibPQ.collect(result, connection: handle, sql: sql)
    }

    /// A multi-statement script without parameters. Only migrations use it: their SQL comes from
    /// `schema/`, never from data.
    func runScript(_ sql: String) throws {
        guard let handle else { throw PostgresError(kind: .connectionLost, message: "not connected") }
        let result = PQexec(handle, sql)
        defer { PQclear(result) }
        _ = try LibPQ.collect(result, connection: handle, sql: sql)
    }

}

/// Set by libpq's notice receiver on the connection's queue (libpq calls it from within the
/// libpq call that reads the message), read on the same queue.
private final class NoticeFlags: @unchecked Sendable {
    var fatalWhileIdle = false
}
