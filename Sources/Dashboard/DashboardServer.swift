import Audit
import Foundation
import Hummingbird
import NIOCore
import Registry
import ServiceLifecycle

/// `keyline dashboard`: the read-only web view across stations (issue 23).
///
/// Hummingbird 2 serves it: its router, response bodies written as they are produced (the
/// Server-Sent Events stream), and graceful shutdown on SIGINT/SIGTERM through swift-service-
/// lifecycle, on the NIO the registry's S3 and cloud clients already use. Every viewer shares one
/// LISTEN connection and one small pool (`poolSize`), never a connection per viewer.
public final class DashboardServer: Sendable {
    public static let poolSize = 3

    public let settings: DashboardSettings
    let pool: PostgresConnectionPool
    let registry: RegistryDatabase
    let feed: FloorFeed
    let fanOut: EventFanOut

    /// Connects, refuses a login that is not auditor-only (`DashboardError.loginNotAuditorOnly`)
    /// or a registry whose schema is behind, and starts listening for the floor's changes.
    public static func prepare(settings: DashboardSettings, database: ConnectionSettings = .fromEnvironment())
        async throws -> DashboardServer {
        let pool = PostgresConnectionPool(settings: database, size: poolSize)
        let registry = RegistryDatabase(client: pool)
        do {
            try await registry.requireCurrentSchema()
            let access = try await registry.loginAccess()
            guard access.isAuditorOnly else { throw DashboardError.loginNotAuditorOnly(access) }
        } catch {
            await pool.close()
            throw error
        }
        return DashboardServer(settings: settings, pool: pool, registry: registry, database: database)
    }

    private init(settings: DashboardSettings, pool: PostgresConnectionPool, registry: RegistryDatabase,
                 database: ConnectionSettings) {
        self.settings = settings
        self.pool = pool
        self.registry = registry
        let fanOut = EventFanOut()
        self.fanOut = fanOut
        self.feed = FloorFeed(registry: registry, listenerSettings: database, fanOut: fanOut)
    }

    /// Serves until SIGINT/SIGTERM (or the calling task is cancelled), then closes every event
    /// stream, the listener and the pool. `onListening` gets the base URL (with the real port
    /// when the port asked for was 0).
    public func run(onListening: @escaping @Sendable (String) -> Void) async throws {
        feed.start()
        let router = Router()
        router.add(middleware: ResponseHeaders())
        if let token = settings.token {
            router.add(middleware: TokenCheck(token: token))
        } else {
            router.add(middleware: LoopbackHostCheck())
        }
        addRoutes(to: router)
        let host = settings.host
        let app = Application(router: router,
                              configuration: .init(address: .hostname(host, port: settings.port), serverName: nil),
                              onServerRunning: { channel in
                                  let port = channel.localAddress?.port ?? 0
                                  let shown = host.contains(":") ? "[\(host)]" : host
                                  onListening("http://\(shown):\(port)/")
                              })
        do {
            try await app.runService()
        } catch {
            await shutDown()
            throw DashboardError.server(address: "\(settings.host):\(settings.port)", message: "\(error)")
        }
        await shutDown()
    }

    private func shutDown() async {
        feed.stop()
        await pool.close()
    }

    // MARK: Routes

    private func addRoutes(to router: Router<BasicRequestContext>) {
        router.get("/") { _, _ -> Response in
            Self.html(FloorPage.page(try await self.currentSnapshotPage()))
        }
        router.get("/floor") { _, _ -> Response in
            Self.html(await self.feed.currentFragment())
        }
        router.get("/events") { _, _ -> Response in
            await self.feed.listeningStarted()
            return self.eventStream()
        }
        router.get("/jobs/:id") { request, context -> Response in
            let raw = try context.parameters.require("id")
            let csv = raw.hasSuffix(".csv")
            guard let id = Int64(csv ? String(raw.dropLast(4)) : raw), id > 0 else { return Self.notFound("no job \(raw)") }
            return try await self.job(id: id, csv: csv, fragment: request.uri.queryParameters["fragment"] != nil)
        }
        router.get("/audit") { request, _ -> Response in
            try await self.audit(request)
        }
        router.get("/dashboard.css") { _, _ -> Response in Self.text(HTMLPage.stylesheet, type: "text/css; charset=utf-8") }
        router.get("/dashboard.js") { _, _ -> Response in Self.text(HTMLPage.script, type: "text/javascript; charset=utf-8") }
        let login = LoginForm(token: settings.token)
        router.get("/login") { _, _ -> Response in login.page() }
        router.post("/login") { request, _ -> Response in try await login.submit(request) }
    }

    private func currentSnapshotPage() async throws -> FloorSnapshot {
        do {
            return try await FloorSnapshot.load(from: registry)
        } catch {
            return .unreachable("\(error)", previous: nil)
        }
    }

    private func eventStream() -> Response {
        guard let stream = fanOut.subscribe(first: feed.currentEvent()) else {
            return Self.text("the dashboard is shutting down", type: "text/plain; charset=utf-8", status: .serviceUnavailable)
        }
        let fanOut = self.fanOut
        let body = ResponseBody { writer in
            try await withGracefulShutdownHandler {
                // The browser reconnects after a second when the stream ends (a dropped slow viewer).
                try await writer.write(ByteBuffer(string: "retry: 1000\n\n"))
                for await event in stream {
                    try await writer.write(ByteBuffer(string: event.wire))
                }
            } onGracefulShutdown: {
                fanOut.close()
            }
            try await writer.finish(nil)
        }
        var headers = HTTPFields()
        headers[.contentType] = "text/event-stream; charset=utf-8"
        headers[.cacheControl] = "no-store"
        return Response(status: .ok, headers: headers, body: body)
    }

    private func job(id: Int64, csv: Bool, fragment: Bool) async throws -> Response {
        let report: JobReport
        do {
            report = try await JobReport.load(jobID: id, registry: registry)
        } catch AuditError.unknownJob {
            return Self.notFound("no job \(id)")
        } catch {
            return Self.unavailable(error)
        }
        if csv {
            var response = Self.text(report.csv(), type: "text/csv; charset=utf-8")
            response.headers[.contentDisposition] = "attachment; filename=\"job-\(id).csv\""
            return response
        }
        let events: [AuditEvent]
        do {
            events = try await registry.events(jobID: id)
        } catch {
            return Self.unavailable(error)
        }
        return Self.html(fragment ? JobPage.fragment(report, events: events) : JobPage.page(report, events: events))
    }

    private func audit(_ request: Request) async throws -> Response {
        let parameters = request.uri.queryParameters
        func text(_ name: Substring) -> String? {
            parameters[name].map { String($0).trimmingCharacters(in: .whitespaces) }.flatMap { $0.isEmpty ? nil : $0 }
        }
        let query = AuditPage.Query(product: text("product"), station: text("station"), actor: text("actor"),
                                    from: AuditPage.parseTime(parameters["from"]), to: AuditPage.parseTime(parameters["to"]))
        do {
            let products = try await registry.productIDs()
            var collector: AuditPageCollector?
            var restorations: [Restoration] = []
            if let product = query.product, products.contains(product) {
                let audit = AuditPageCollector()
                _ = try await pool.withConnection { connection in
                    try await KeyAudit.runRegistryOnly(on: connection, scope: AuditScope(productID: product), output: audit)
                }
                collector = audit
                restorations = try await registry.restorations(productID: product)
            }
            let events = try await registry.events(station: query.station, actor: query.actor, from: query.from, to: query.to,
                                                   limit: AuditPage.eventLimit)
            return Self.html(AuditPage.page(query: query, products: products, audit: collector, restorations: restorations,
                                            events: events))
        } catch {
            return Self.unavailable(error)
        }
    }

    // MARK: Responses

    static func html(_ text: String, status: HTTPResponse.Status = .ok) -> Response {
        Self.text(text, type: "text/html; charset=utf-8", status: status)
    }

    static func text(_ text: String, type: String, status: HTTPResponse.Status = .ok) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = type
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }

    static func notFound(_ message: String) -> Response {
        html(HTMLPage.layout(title: "Not found", page: "error", content: "<p id=\"error\">\(HTMLText.escaped(message))</p>"),
             status: .notFound)
    }

    /// The registry away or refusing: said on the page, not a blank 500.
    static func unavailable(_ error: any Error) -> Response {
        html(HTMLPage.layout(title: "Registry unreachable", page: "error",
                             content: "<p id=\"error\" data-alarm=\"registry\">registry: \(HTMLText.escaped("\(error)"))</p>"),
             status: .serviceUnavailable)
    }
}

/// Headers on every response: nothing is cached, only the dashboard's own script and stylesheet
/// run, and no other site frames the pages.
struct ResponseHeaders: RouterMiddleware {
    typealias Context = BasicRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response = try await next(request, context)
        response.headers[.cacheControl] = response.headers[.cacheControl] ?? "no-store"
        response.headers[.contentSecurityPolicy] = "default-src 'self'; frame-ancestors 'none'"
        response.headers[.xContentTypeOptions] = "nosniff"
        return response
    }
}

/// Off loopback: every request but `/login` presents the token (`Authorization: Bearer` or the
/// `token` cookie), compared in constant time.
struct TokenCheck: RouterMiddleware {
    typealias Context = BasicRequestContext
    let token: AccessToken

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        // The login form, and the stylesheet and script every page uses (no data in them).
        if Self.open.contains(request.uri.path) { return try await next(request, context) }
        var presented: Substring?
        if let authorization = request.headers[.authorization], authorization.hasPrefix("Bearer ") {
            presented = Substring(authorization.dropFirst("Bearer ".count))
        } else if let cookie = request.cookies["token"] {
            presented = Substring(cookie.value)
        }
        guard token.matches(presented) else { return Self.unauthorized() }
        return try await next(request, context)
    }

    static let open: Set<String> = ["/login", "/dashboard.css", "/dashboard.js"]

    static func unauthorized() -> Response {
        var response = DashboardServer.html(
            HTMLPage.layout(title: "Token required", page: "error",
                            content: "<p id=\"error\">This dashboard needs its token: <a href=\"/login\">enter it once</a>, "
                                + "or send Authorization: Bearer TOKEN.</p>"), status: .unauthorized)
        response.headers[.wwwAuthenticate] = "Bearer"
        return response
    }
}
