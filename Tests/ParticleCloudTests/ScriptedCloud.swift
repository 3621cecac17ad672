import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// A tiny loopback HTTP server for the drainer's failure policy before (and apart from) the
/// simulated cloud: each request is answered by `respond`, which sees what keyline sent. The
/// end-to-end tests use the real `keyline-sim cloud` instead.
final class ScriptedCloud: @unchecked Sendable {
    struct Request: Sendable {
        var method: String
        var uri: String
        var headers: [(String, String)]
        var body: String
        func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }
        /// The form fields (application/x-www-form-urlencoded decoded).
        var form: [String: String] {
            var fields: [String: String] = [:]
            for pair in body.split(separator: "&") {
                let parts = pair.split(separator: "=", maxSplits: 1).map {
                    String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? ""
                }
                fields[parts[0]] = parts.count > 1 ? parts[1] : ""
            }
            return fields
        }
    }

    struct Response: Sendable {
        var status: Int
        var headers: [(String, String)] = []
        var body: String = "{}"
    }

    private let lock = NSLock()
    private var seen: [Request] = []
    private let respond: @Sendable (Request, Int) -> Response
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private var channel: Channel?

    var requests: [Request] { lock.withLock { seen } }
    var url: String { "http://127.0.0.1:\(channel!.localAddress!.port!)" }

    /// `respond` gets each request and its index (0-based, in arrival order).
    init(_ respond: @escaping @Sendable (Request, Int) -> Response) async throws {
        self.respond = respond
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(Handler(cloud: self))
                }
            }
        channel = try await bootstrap.bind(host: "127.0.0.1", port: 0).get()
    }

    func stop() async {
        try? await channel?.close()
        try? await group.shutdownGracefully()
    }

    fileprivate func handle(_ request: Request) -> Response {
        let index = lock.withLock { seen.append(request); return seen.count - 1 }
        return respond(request, index)
    }

    /// Success replies as the contract gives them.
    static func accepted(_ request: Request) -> Response {
        if request.uri.hasSuffix("/devices") {
            return Response(status: 200, headers: [("X-Request-Id", "req-\(UUID().uuidString)")],
                            body: #"{"updatedDeviceIds":["\#(request.form["id"] ?? "")"],"existingDeviceIds":[],"invalidDeviceIds":[],"nonmemberDeviceIds":[]}"#)
        }
        return Response(status: 200, headers: [("X-Request-Id", "req-\(UUID().uuidString)")], body: #"{"ok":true}"#)
    }

    static func error(_ status: Int, _ code: String, _ text: String, headers: [(String, String)] = []) -> Response {
        Response(status: status, headers: [("X-Request-Id", "req-\(status)")] + headers,
                 body: #"{"ok":false,"error":"\#(code)","error_description":"\#(text)"}"#)
    }

    private final class Handler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let cloud: ScriptedCloud
        var head: HTTPRequestHead?
        var body = ByteBuffer()

        init(cloud: ScriptedCloud) { self.cloud = cloud }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let value): head = value; body.clear()
            case .body(var chunk): body.writeBuffer(&chunk)
            case .end:
                guard let head else { return }
                let request = Request(method: "\(head.method)", uri: head.uri,
                                      headers: head.headers.map { ($0.name, $0.value) },
                                      body: body.readString(length: body.readableBytes) ?? "")
                let response = cloud.handle(request)
                var headers = HTTPHeaders(response.headers)
                headers.add(name: "Content-Type", value: "application/json")
                headers.add(name: "Content-Length", value: String(response.body.utf8.count))
                context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version,
                                                                     status: HTTPResponseStatus(statusCode: response.status),
                                                                     headers: headers))), promise: nil)
                context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: response.body)))), promise: nil)
                context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            }
        }
    }
}
