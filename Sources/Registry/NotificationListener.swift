import CLibPQ
import Foundation

/// What a `NotificationListener` hands out, in the order it happened.
public enum ListenerUpdate: Sendable, Equatable {
    /// LISTEN is in force on a (new) connection. `reconnected` is false the first time only:
    /// notifications sent while the listener was away are lost, so a reader re-reads its state.
    case connected(reconnected: Bool)
    /// The connection broke or could not be opened; the listener retries with back-off.
    /// `reason` is libpq's message with passwords scrubbed (never a payload).
    case disconnected(reason: String)
    /// One NOTIFY on the channel: its payload as sent.
    case notification(payload: String)
}

/// One dedicated libpq connection, on a thread of its own, that LISTENs on one channel and hands
/// every NOTIFY payload to an `AsyncStream` (the dashboard's single database listener).
///
/// The thread blocks in poll(2) on the connection's socket, never on Swift's cooperative pool.
/// After an outage it reconnects with doubling back-off (`initialBackoff` up to `maximumBackoff`)
/// and says so in the stream (`.disconnected`, then `.connected(reconnected: true)`), so a viewer
/// can show "registry unreachable" while it lasts. The stream holds at most `bufferLimit`
/// undelivered updates (the newest are kept): a reader that falls behind loses old payloads, which
/// only ever ask it to re-read.
public final class NotificationListener: @unchecked Sendable {
    public let channel: String
    public let updates: AsyncStream<ListenerUpdate>
    private let settings: ConnectionSettings
    private let continuation: AsyncStream<ListenerUpdate>.Continuation
    private let initialBackoff: TimeInterval
    private let maximumBackoff: TimeInterval
    private let stopFlag = StopFlag()
    private var thread: Thread?

    /// A channel name is an SQL identifier: lower-case letters, digits and `_` (it goes into the
    /// LISTEN statement, which takes no parameters).
    public static func isValidChannel(_ channel: String) -> Bool {
        guard let first = channel.unicodeScalars.first, ("a"..."z").contains(first), channel.count <= 63 else { return false }
        return channel.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" }
    }

    public init(settings: ConnectionSettings, channel: String, initialBackoff: TimeInterval = 0.25,
                maximumBackoff: TimeInterval = 5, bufferLimit: Int = 1024) {
        precondition(Self.isValidChannel(channel), "a LISTEN channel is a lower-case SQL identifier")
        self.settings = settings
        self.channel = channel
        self.initialBackoff = initialBackoff
        self.maximumBackoff = maximumBackoff
        (updates, continuation) = AsyncStream.makeStream(of: ListenerUpdate.self, bufferingPolicy: .bufferingNewest(bufferLimit))
    }

    deinit { stopFlag.set() }

    /// Starts the listener's thread (once). Updates arrive in `updates`.
    public func start() {
        guard thread == nil else { return }
        let thread = Thread { [settings, channel, continuation, initialBackoff, maximumBackoff, stopFlag] in
            Self.run(settings: settings, channel: channel, continuation: continuation,
                     backoff: (initialBackoff, maximumBackoff), stop: stopFlag)
        }
        thread.name = "keyline.listen.\(channel)"
        self.thread = thread
        thread.start()
    }

    /// Stops the thread within one poll interval and finishes the stream.
    public func stop() {
        stopFlag.set()
    }

    // MARK: - On the listener's thread

    private static let pollMilliseconds: Int32 = 200

    private static func run(settings: ConnectionSettings, channel: String,
                            continuation: AsyncStream<ListenerUpdate>.Continuation,
                            backoff: (initial: TimeInterval, maximum: TimeInterval), stop: StopFlag) {
        defer { continuation.finish() }
        var wait = backoff.initial
        var everConnected = false
        while !stop.isSet {
            let connection: OpaquePointer
            do {
                connection = try open(settings)
                // Whether the server took them or not (an older server), LISTEN says if the connection works.
                if let result = PQexec(connection, LibPQ.serverDeadPeerDetection) { PQclear(result) }
                try execute(connection, "LISTEN \(channel)")
            } catch {
                continuation.yield(.disconnected(reason: settings.scrubbingPasswords("\(error)")))
                sleep(wait, unless: stop)
                wait = min(wait * 2, backoff.maximum)
                continue
            }
            continuation.yield(.connected(reconnected: everConnected))
            everConnected = true
            wait = backoff.initial
            let reason = listen(connection, continuation: continuation, stop: stop)
            PQfinish(connection)
            if let reason {
                continuation.yield(.disconnected(reason: settings.scrubbingPasswords(reason)))
                sleep(wait, unless: stop)
                wait = min(wait * 2, backoff.maximum)
            }
        }
    }

    /// Delivers notifications until the connection breaks (returns why) or `stop` is set (nil).
    private static func listen(_ connection: OpaquePointer, continuation: AsyncStream<ListenerUpdate>.Continuation,
                               stop: StopFlag) -> String? {
        while !stop.isSet {
            var descriptor = pollfd(fd: PQsocket(connection), events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, pollMilliseconds)
            if ready < 0 && errno != EINTR { return "poll failed (errno \(errno))" }
            if ready > 0 {
                if PQconsumeInput(connection) == 0 || PQstatus(connection) != CONNECTION_OK {
                    return lastError(connection)
                }
                while let notice = PQnotifies(connection) {
                    let payload = notice.pointee.extra.map { String(cString: $0) } ?? ""
                    PQfreemem(notice)
                    continuation.yield(.notification(payload: payload))
                }
                // The server's FATAL before closing (restart, pg_terminate_backend) leaves the
                // socket readable at EOF: PQconsumeInput fails on the next round.
            }
        }
        return nil
    }

    private static func open(_ settings: ConnectionSettings) throws -> OpaquePointer {
        try settings.validate()
        guard let connection = LibPQ.startConnecting(settings, applicationName: "keyline-listen") else {
            throw PostgresError(kind: .connectionFailed, message: "libpq could not allocate a connection")
        }
        let timedOut = LibPQ.completeConnecting(connection)
        guard !timedOut, PQstatus(connection) == CONNECTION_OK else {
            let (sqlState, message) = LibPQ.startupError(connection)
            PQfinish(connection)
            throw PostgresError(kind: .connectionFailed, sqlState: sqlState,
                                message: (timedOut ? "timeout expired" : message) + " [\(settings)]")
        }
        PQsetErrorVerbosity(connection, PQERRORS_DEFAULT)
        return connection
    }

    private static func execute(_ connection: OpaquePointer, _ sql: String) throws {
        let result = PQexec(connection, sql)
        defer { PQclear(result) }
        guard let result, PQresultStatus(result) == PGRES_COMMAND_OK else {
            let message = lastError(connection)
            PQfinish(connection)
            throw PostgresError(kind: .server, message: message, statement: sql)
        }
    }

    private static func lastError(_ connection: OpaquePointer) -> String {
        let message = PQerrorMessage(connection).map { String(cString: $0) }?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        return message.isEmpty ? "the server closed the connection" : message
    }

    /// Sleeps `seconds` in short steps, returning early once `stop` is set.
    private static func sleep(_ seconds: TimeInterval, unless stop: StopFlag) {
        let deadline = Date().addingTimeInterval(seconds)
        while !stop.isSet, Date() < deadline {
            Thread.sleep(forTimeInterval: min(0.05, max(0, deadline.timeIntervalSinceNow)))
        }
    }
}

/// Set from any thread, read by the listener's thread.
private final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}
