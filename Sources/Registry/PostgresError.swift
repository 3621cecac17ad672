import FailurePolicy

/// An error from PostgreSQL or libpq, keeping the server's SQLSTATE and message.
///
/// Parameter values are never part of an error: they may be key material or credentials.
public struct PostgresError: Error, Sendable, CustomStringConvertible, Equatable {
    public enum Kind: String, Sendable, Codable {
        /// Could not connect (server down, wrong socket or host, authentication refused). When the
        /// server itself refused the connection, `sqlState` says why (28xxx authentication,
        /// 3D000 no such database, 53300 too many connections ...).
        case connectionFailed = "connection_failed"
        /// The connection settings themselves are unusable (a malformed `DATABASE_URL`): nothing
        /// was tried, and trying again will not help.
        case invalidSettings = "invalid_settings"
        /// The connection broke while a statement was in flight; the next call reconnects.
        case connectionLost = "connection_lost"
        /// The connection broke while COMMIT was in flight: the transaction may or may not have
        /// committed. Check before repeating it.
        case commitOutcomeUnknown = "commit_outcome_unknown"
        /// The server refused the statement (constraint, permission, syntax ...). See `sqlState`.
        case server
        /// A result column could not be read as the requested Swift type.
        case decoding
        /// The transaction body swallowed a failed statement; PostgreSQL rolled the transaction back.
        case transactionAborted = "transaction_aborted"
    }

    public var kind: Kind
    /// Five-character SQLSTATE (`23505` unique violation, `42501` insufficient privilege ...).
    public var sqlState: String?
    /// The server's primary message, or libpq's.
    public var message: String
    public var detail: String?
    public var hint: String?
    /// Constraint, table and column the server names, when it does.
    public var constraint: String?
    public var table: String?
    public var column: String?
    /// The statement's first line (SQL text only, no parameter values).
    public var statement: String?

    public init(kind: Kind, sqlState: String? = nil, message: String, detail: String? = nil,
                hint: String? = nil, constraint: String? = nil, table: String? = nil,
                column: String? = nil, statement: String? = nil) {
        self.kind = kind
        self.sqlState = sqlState
        self.message = message
        self.detail = detail
        self.hint = hint
        self.constraint = constraint
        self.table = table
        self.column = column
        self.statement = statement
    }

    public var isUniqueViolation: Bool { sqlState == "23505" }
    public var isInsufficientPrivilege: Bool { sqlState == "42501" }
    /// Serialization failure or deadlock: the whole transaction may simply be run again.
    public var isRetryableConflict: Bool { sqlState == "40001" || sqlState == "40P01" }
    /// The connection itself is gone or could not be made (SQLSTATE class 08, or the server shut
    /// the backend down), for a reason that may pass. Configuration errors are not connection loss.
    public var isConnectionLoss: Bool {
        if isConfigurationError { return false }
        if kind == .connectionLost || kind == .connectionFailed { return true }
        guard let sqlState else { return false }
        return sqlState.hasPrefix("08") || ["57P01", "57P02", "57P03"].contains(sqlState)
    }

    /// Trying again will not help until someone changes the settings, the login or the cluster:
    /// malformed connection settings, authentication refused (SQLSTATE class 28: bad password,
    /// unknown role, no pg_hba.conf entry) or a database that does not exist (3D000).
    public var isConfigurationError: Bool {
        if kind == .invalidSettings { return true }
        guard kind == .connectionFailed || kind == .server, let sqlState else { return false }
        return sqlState.hasPrefix("28") || sqlState == "3D000"
    }

    public var description: String {
        var text: String
        switch kind {
        case .connectionFailed:
            text = "cannot connect to PostgreSQL: \(message)"
            text += "\n  set DATABASE_URL (or PGHOST/PGUSER/PGDATABASE), or start the local cluster with `make db-up`"
        case .invalidSettings:
            text = "cannot connect to PostgreSQL: \(message)"
            text += "\n  fix DATABASE_URL (a postgresql:// URI or a \"host=… dbname=…\" string), or unset it to use PGHOST/PGUSER/PGDATABASE or `make db-up`"
        case .connectionLost:
            text = "the PostgreSQL connection was lost: \(message)"
            text += "\n  the statement may not have run; the next call reconnects"
        case .commitOutcomeUnknown:
            text = "the PostgreSQL connection was lost during COMMIT: \(message)"
            text += "\n  the transaction may have committed; check the registry before repeating it"
        case .server:
            text = "PostgreSQL error \(sqlState ?? "?????"): \(message)"
        case .decoding:
            text = "cannot read a PostgreSQL result: \(message)"
        case .transactionAborted:
            text = "the transaction was rolled back because a statement in it failed: \(message)"
        }
        if let detail { text += "\n  detail: \(detail)" }
        if let hint { text += "\n  hint: \(hint)" }
        if let constraint { text += "\n  constraint: \(constraint)" }
        if let statement { text += "\n  statement: \(statement)" }
        return text
    }
}

extension PostgresError: ClassifiedError {
    /// Lost connections and serialization conflicts pass by themselves (`retryable`); a database
    /// that cannot be reached, refuses the login or the privilege, is out of resources or is not
    /// migrated needs a person (`needsOperator`: devices are held, not failed). A lost COMMIT is
    /// retryable because every registry step is idempotent or reports the replay as a conflict.
    public var failureClass: FailureClass {
        if isConfigurationError { return .needsOperator }
        switch kind {
        case .invalidSettings, .connectionFailed: return .needsOperator
        case .connectionLost, .commitOutcomeUnknown: return .retryable
        case .decoding: return .needsOperator  // the schema is not what this build expects
        case .transactionAborted: return .badDevice
        case .server: break
        }
        if isConnectionLoss || isRetryableConflict { return .retryable }
        guard let sqlState else { return .badDevice }
        switch sqlState {
        case "57014", "55P03": return .retryable  // statement timeout / lock not available
        case "42501": return .needsOperator         // insufficient privilege
        default: break
        }
        switch sqlState.prefix(2) {
        case "53", "58", "XX", "42", "F0": return .needsOperator  // resources, I/O, schema, config
        case "22": return .badInput                                    // a value the database cannot take
        default: return .badDevice                                     // e.g. a constraint on this device's row
        }
    }
}
