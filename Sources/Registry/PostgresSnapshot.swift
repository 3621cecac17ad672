import Foundation

/// A read-only, repeatable-read transaction on one connection, for reading much more than fits in
/// memory: every query in it sees the same snapshot, and `forEachBatch` streams a result through a
/// server-side cursor (`DECLARE … CURSOR` / `FETCH n`), so a client holds one batch at a time
/// however many rows the query returns (PostgreSQL documentation, "DECLARE" and "FETCH").
///
/// Every libpq call runs on the connection's own queue, never on Swift's cooperative pool; the
/// body's own work between batches runs wherever the caller runs. Use the connection for nothing
/// else while the snapshot is open.
public final class PostgresSnapshot: Sendable {
    let connection: PostgresConnection
    private let cursorCount = CursorCounter()

    init(connection: PostgresConnection) {
        self.connection = connection
    }

    /// Runs one parameterized statement in the snapshot and returns its rows (a small result).
    public func query(_ sql: String, _ parameters: [any PostgresEncodable] = []) async throws -> [PostgresRow] {
        let values = parameters.map(\.postgresValue)
        let connection = connection
        return try await connection.onQueue { try connection.run(sql, values).rows }
    }

    /// Streams the rows of `sql` in batches of at most `batchSize`, calling `body` with each batch
    /// in order. The next batch is fetched while `body` works on the current one (the server
    /// produces rows while the client formats them), so memory is two batches, whatever the row
    /// count. The cursor is closed afterwards, also when `body` throws. `body` may query the
    /// snapshot: its statements queue behind the fetch in flight on the connection's queue.
    public func forEachBatch(_ sql: String, _ parameters: [any PostgresEncodable] = [], batchSize: Int = 2_000,
                             _ body: ([PostgresRow]) async throws -> Void) async throws {
        precondition(batchSize > 0, "a cursor batch holds at least one row")
        let name = "keyline_cursor_\(cursorCount.next())"
        let values = parameters.map(\.postgresValue)
        let connection = connection
        try await connection.onQueue { _ = try connection.run("DECLARE \(name) NO SCROLL CURSOR FOR \(sql)", values) }
        @Sendable func fetch() -> Task<[PostgresRow], any Error> {
            Task { try await connection.onQueue { try connection.run("FETCH \(batchSize) FROM \(name)", []).rows } }
        }
        var next = fetch()
        do {
            while true {
                let rows = try await next.value
                let last = rows.count < batchSize
                if !last { next = fetch() }
                if !rows.isEmpty { try await body(rows) }
                if last { break }
            }
        } catch {
            _ = await next.result  // the fetch in flight, if any, before the cursor goes
            _ = try? await connection.onQueue { _ = try connection.run("CLOSE \(name)", []) }
            throw error
        }
        try await connection.onQueue { _ = try connection.run("CLOSE \(name)", []) }
    }
}

private final class CursorCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    func next() -> Int { lock.withLock { value += 1; return value } }
}

extension PostgresConnection {
    /// Runs `body` in a read-only REPEATABLE READ transaction (one consistent snapshot of the
    /// database for every query of `body`), committed when `body` returns and rolled back when it
    /// throws. Not retried: `body` may have had effects (printed rows) by the time anything fails.
    public func withReadOnlySnapshot<T: Sendable>(_ body: (PostgresSnapshot) async throws -> T) async throws -> T {
        try await onQueue {
            try self.ensureLive()
            _ = try self.run("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", [])
        }
        let snapshot = PostgresSnapshot(connection: self)
        let value: T
        do {
            value = try await body(snapshot)
        } catch {
            _ = try? await onQueue { self.rollbackQuietly() }
            throw error
        }
        try await onQueue { _ = try self.run("COMMIT", []) }
        return value
    }
}
