import CLibPQ
import Dispatch
import Foundation

// Opening, configuring and re-checking the libpq session of a `PostgresConnection`.
extension PostgresConnection {
    /// Opens the connection on first use.
    func openIfNeeded() throws {
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

    /// Timestamps come back in UTC ISO format whatever the server's or login's defaults are.
    func configureSession() throws {
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

    func reset() throws {
        if let handle { PQfinish(handle) }
        handle = nil
        try openIfNeeded()
        reconnectCount += 1
    }

    struct StatementResult {
        var rows: [PostgresRow]
        var affectedRows: Int
    }
}
