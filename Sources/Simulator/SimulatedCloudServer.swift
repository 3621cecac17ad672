import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// The simulated cloud on a loopback HTTP/1.1 port (SwiftNIO's HTTP/1 codec, already in the
/// dependency graph through AsyncHTTPClient): every request is read whole (at most 64 KiB of
/// body), answered by `SimulatedCloud.respond(to:)`, and every response carries `X-Request-Id`.
public final class SimulatedCloudServer: Sendable {
    public let cloud: SimulatedCloud
    private let group: MultiThreadedEventLoopGroup
    private let channel: any Channel
    /// e.g. `http://127.0.0.1:43121`.
    public let url: String

    /// The largest request body accepted (a PEM key is under 1 KiB).
    static let maximumBody = 64 * 1024

    /// Binds `host:port` (port 0: a free one). Only a loopback address: the simulated cloud takes
    /// any key from whoever holds its token, and keyline sends plain http only to loopback.
    public init(cloud: SimulatedCloud, host: String = "127.0.0.1", port: Int = 0) async throws(SimulatedCloudError) {
        guard host == "127.0.0.1" || host == "::1" || host == "localhost" else {
            throw .listen(address: "\(host):\(port)", detail: "the simulated cloud listens on a loopback address only (127.0.0.1 or ::1)")
        }
        self.cloud = cloud
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(CloudHTTPHandler(cloud: cloud))
                }
            }
        do {
            channel = try await bootstrap.bind(host: host, port: port).get()
        } catch {
            try? await group.shutdownGracefully()
            throw .listen(address: "\(host):\(port)", detail: "\(error)")
        }
        self.group = group
        let bound = channel.localAddress?.port ?? port
        url = host.contains(":") ? "http://[\(host)]:\(bound)" : "http://\(host):\(bound)"
    }

    /// Stops listening, closes connections and waits for the state file.
    public func stop() async {
        try? await channel.close().get()
        try? await group.shutdownGracefully()
        _ = await cloud.flushed()
    }
}

/// One connection: gathers a request, asks the cloud, writes the answer (late for `slow=`, not
/// at all for `down=`).
final class CloudHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let cloud: SimulatedCloud
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var tooLarge = false

    init(cloud: SimulatedCloud) { self.cloud = cloud }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let requestHead):
            head = requestHead
            body = []
            tooLarge = false
        case .body(var buffer):
            if body.count + buffer.readableBytes > SimulatedCloudServer.maximumBody {
                tooLarge = true
            } else if let bytes = buffer.readBytes(length: buffer.readableBytes) {
                body += bytes
            }
        case .end:
            guard let head else { return }
            self.head = nil
            var reply: CloudHTTPResponse
            if tooLarge {
                reply = .error(413, "request_too_large", "the body is larger than \(SimulatedCloudServer.maximumBody) bytes")
            } else {
                var headers: [String: String] = [:]
                for (name, value) in head.headers { headers[name] = value }
                reply = cloud.respond(to: CloudHTTPRequest(method: head.method.rawValue, target: head.uri, headers: headers, body: body))
            }
            if reply.dropConnection {
                context.close(promise: nil)
                return
            }
            let keepAlive = head.isKeepAlive
            if reply.delay > .zero {
                let loop = context.eventLoop.assumeIsolated()
                let nanoseconds = reply.delay.components.seconds * 1_000_000_000 + reply.delay.components.attoseconds / 1_000_000_000
                loop.scheduleTask(in: .nanoseconds(nanoseconds)) {
                    self.write(reply, version: head.version, keepAlive: keepAlive, context: context)
                }
            } else {
                write(reply, version: head.version, keepAlive: keepAlive, context: context)
            }
        }
    }

    private func write(_ reply: CloudHTTPResponse, version: HTTPVersion, keepAlive: Bool, context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: String(reply.body.count))
        headers.add(name: "X-Request-Id", value: cloud.makeRequestID())
        if let retry = reply.retryAfter { headers.add(name: "Retry-After", value: String(retry)) }
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        let status = HTTPResponseStatus(statusCode: reply.status)
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: version, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: reply.body)))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            if !keepAlive { channel.close(promise: nil) }
        }
    }
}
