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
    let queue: DispatchQueue
    // Only touched on `queue`.
    var handle: OpaquePointer?
    var reconnectCount = 0
    let notices = NoticeFlags()

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

    static let maximumAttempts = 4

    func runTransaction<T>(isolation: TransactionIsolation,
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

    func runTransactionOnce<T>(isolation: TransactionIsolation,
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
}

/// Set by libpq's notice receiver on the connection's queue (libpq calls it from within the
/// libpq call that reads the message), read on the same queue.
final class NoticeFlags: @unchecked Sendable {
    var fatalWhileIdle = false
}

