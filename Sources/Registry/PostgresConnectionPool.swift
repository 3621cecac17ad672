/// What the registry needs from PostgreSQL: statements and transactions. A single
/// `PostgresConnection` and a `PostgresConnectionPool` both provide it.
public protocol PostgresClient: Sendable {
    func query(_ sql: String, _ parameters: [any PostgresEncodable]) async throws -> [PostgresRow]
    func execute(_ sql: String, _ parameters: [any PostgresEncodable]) async throws -> Int
    func transaction<T: Sendable>(isolation: TransactionIsolation,
                                  _ body: @escaping @Sendable (PostgresTransaction) throws -> T) async throws -> T
}

extension PostgresConnection: PostgresClient {}

/// Up to `size` connections shared by many tasks (one per device on a station): each statement
/// or transaction borrows an idle connection, opening one while fewer than `size` exist, or waits
/// for one to come back (first come, first served). Connections are opened lazily and kept.
public actor PostgresConnectionPool: PostgresClient {
    public let settings: ConnectionSettings
    public let size: Int
    private var idle: [PostgresConnection] = []
    private var opened = 0
    private var waiters: [(id: UInt64, continuation: CheckedContinuation<Handover, Never>)] = []
    private var lastWaiterID: UInt64 = 0

    /// What a waiting task is woken with.
    private enum Handover: Sendable {
        /// A connection another task returned.
        case connection(PostgresConnection)
        /// A slot came free because opening a connection failed: try opening one yourself.
        case retry
        case closed
        /// The waiting task was cancelled: it stops waiting at once (a device whose run ends
        /// must not hold its place in the queue until a connection comes back).
        case cancelled
    }
    private var closed = false

    public init(settings: ConnectionSettings, size: Int) {
        precondition(size > 0, "a connection pool needs at least one connection")
        self.settings = settings
        self.size = size
    }

    /// Runs `body` with a connection of its own for the duration.
    public func withConnection<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        let connection = try await checkOut()
        do {
            let value = try await body(connection)
            checkIn(connection)
            return value
        } catch {
            checkIn(connection)
            throw error
        }
    }

    @discardableResult
    public func query(_ sql: String, _ parameters: [any PostgresEncodable] = []) async throws -> [PostgresRow] {
        try await withConnection { try await $0.query(sql, parameters) }
    }

    @discardableResult
    public func execute(_ sql: String, _ parameters: [any PostgresEncodable] = []) async throws -> Int {
        try await withConnection { try await $0.execute(sql, parameters) }
    }

    public func transaction<T: Sendable>(
        isolation: TransactionIsolation = .readCommitted,
        _ body: @escaping @Sendable (PostgresTransaction) throws -> T
    ) async throws -> T {
        try await withConnection { try await $0.transaction(isolation: isolation, body) }
    }

    /// Connections currently open (idle or borrowed).
    public var openConnections: Int { opened }

    /// Closes idle connections now and borrowed ones as they come back; later use fails.
    public func close() async {
        closed = true
        let connections = idle
        idle.removeAll()
        opened -= connections.count
        for waiter in waiters { waiter.continuation.resume(returning: .closed) }
        waiters.removeAll()
        for connection in connections { await connection.close() }
    }

    private func checkOut() async throws -> PostgresConnection {
        while true {
            guard !closed else { throw Self.closedError }
            if let connection = idle.popLast() { return connection }
            if opened < size {
                opened += 1
                do {
                    return try await PostgresConnection.connect(settings, label: "keyline.pool.\(opened)")
                } catch {
                    opened -= 1
                    // The slot is free again, and no connection will come back for it: wake the
                    // first waiter to open one itself (or fail the same way and wake the next).
                    if !waiters.isEmpty { waiters.removeFirst().continuation.resume(returning: .retry) }
                    throw error
                }
            }
            try Task.checkCancellation()
            lastWaiterID &+= 1
            let id = lastWaiterID
            // The handler hops onto the actor, which runs it only after this task has suspended
            // with its continuation appended: a cancellation cannot slip between the two.
            let handover = await withTaskCancellationHandler {
                await withCheckedContinuation { waiters.append((id, $0)) }
            } onCancel: {
                Task { await self.cancelWaiter(id) }
            }
            switch handover {
            case .connection(let connection): return connection
            case .retry: continue
            case .closed: throw Self.closedError
            case .cancelled: throw CancellationError()
            }
        }
    }

    private func checkIn(_ connection: PostgresConnection) {
        if closed {
            opened -= 1
            Task { await connection.close() }
        } else if !waiters.isEmpty {
            waiters.removeFirst().continuation.resume(returning: .connection(connection))
        } else {
            idle.append(connection)
        }
    }

    private func cancelWaiter(_ id: UInt64) {
        guard let index = waiters.firstIndex(where: { $0.id == id }) else { return }  // already woken
        waiters.remove(at: index).continuation.resume(returning: .cancelled)
    }

    private static let closedError = PostgresError(kind: .connectionFailed, message: "the connection pool is closed")
}
