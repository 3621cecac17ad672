import CLibPQ
import Foundation

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
