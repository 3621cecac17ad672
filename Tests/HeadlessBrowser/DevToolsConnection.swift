import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

/// What went wrong talking to the browser, with the method and what the browser said.
public enum DevToolsError: Error, CustomStringConvertible {
    /// The WebSocket upgrade to `url` was refused or the connection failed.
    case connectFailed(url: String, reason: String)
    /// The browser answered `method` with a protocol error.
    case protocolError(method: String, code: Int, message: String)
    /// No answer to `method` within `limit` (a hung page or browser).
    case noReply(method: String, after: Duration)
    /// The connection closed while `method` waited for its answer.
    case closed(method: String)
    /// A page script threw (`Runtime.evaluate`'s exceptionDetails).
    case scriptThrew(expression: String, details: String)
    /// A reply did not have the shape the protocol documents.
    case unexpectedReply(method: String, reply: String)

    public var description: String {
        switch self {
        case .connectFailed(let url, let reason): return "DevTools: cannot connect to \(url): \(reason)"
        case .protocolError(let method, let code, let message): return "DevTools: \(method) failed (\(code)): \(message)"
        case .noReply(let method, let limit): return "DevTools: no reply to \(method) within \(limit)"
        case .closed(let method): return "DevTools: the browser closed the connection while \(method) waited"
        case .scriptThrew(let expression, let details): return "page script threw: \(details)\nin: \(expression.prefix(300))"
        case .unexpectedReply(let method, let reply): return "DevTools: unexpected reply to \(method): \(reply.prefix(300))"
        }
    }
}

/// One WebSocket connection to a browser's DevTools endpoint
/// (https://chromedevtools.github.io/devtools-protocol/): numbered commands, each answered by a
/// message with the same `id`. Pages are reached through flattened target sessions (`sessionId` on
/// the message), so every tab shares this one connection.
public final class DevToolsConnection: @unchecked Sendable {
    private let lock = NSLock()
    private var nextID = 1
    private var pending: [Int: (method: String, continuation: CheckedContinuation<JSONValue, any Error>)] = [:]
    private var channel: (any Channel)?
    private var isClosed = false
    /// How long one command may wait for its answer before it fails instead of hanging the test.
    public let replyLimit: Duration

    private init(replyLimit: Duration) { self.replyLimit = replyLimit }

    /// Connects to `ws://host:port/path` (the browser endpoint Chromium writes to DevToolsActivePort).
    public static func connect(host: String, port: Int, path: String, replyLimit: Duration = .seconds(60)) async throws -> DevToolsConnection {
        let connection = DevToolsConnection(replyLimit: replyLimit)
        let url = "ws://\(host):\(port)\(path)"
        enum Upgrade: Sendable { case upgraded(any Channel), refused }
        let negotiated: EventLoopFuture<Upgrade>
        do {
            negotiated = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        // Screenshots arrive as one large text message (base64 PNG).
                        let upgrader = NIOTypedWebSocketClientUpgrader<Upgrade>(maxFrameSize: 1 << 27) { channel, _ in
                            channel.eventLoop.makeCompletedFuture {
                                try channel.pipeline.syncOperations.addHandler(NIOWebSocketFrameAggregator(
                                    minNonFinalFragmentSize: 0, maxAccumulatedFrameCount: 1 << 16, maxAccumulatedFrameSize: 1 << 27))
                                try channel.pipeline.syncOperations.addHandler(DevToolsFrameHandler(connection: connection))
                                return Upgrade.upgraded(channel)
                            }
                        }
                        // Chromium accepts DevTools connections only with a Host that is an IP or localhost.
                        var headers = HTTPHeaders()
                        headers.add(name: "Host", value: "\(host):\(port)")
                        headers.add(name: "Content-Length", value: "0")
                        let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: headers)
                        let configuration = NIOTypedHTTPClientUpgradeConfiguration<Upgrade>(
                            upgradeRequestHead: head, upgraders: [upgrader],
                            notUpgradingCompletionHandler: { channel in channel.eventLoop.makeSucceededFuture(.refused) })
                        return try channel.pipeline.syncOperations.configureUpgradableHTTPClientPipeline(
                            configuration: .init(upgradeConfiguration: configuration))
                    }
                }
        } catch {
            throw DevToolsError.connectFailed(url: url, reason: "\(error)")
        }
        switch try await negotiated.get() {
        case .upgraded(let channel):
            connection.lock.withLock { connection.channel = channel }
            return connection
        case .refused:
            throw DevToolsError.connectFailed(url: url, reason: "the WebSocket upgrade was refused")
        }
    }

    /// Sends `method` with `params` (to the page session `session`, or the browser) and returns
    /// the reply's `result`.
    @discardableResult
    public func call(_ method: String, _ params: JSONValue = [:], session: String? = nil) async throws -> JSONValue {
        var message: [String: JSONValue] = ["method": .string(method), "params": params]
        if let session { message["sessionId"] = .string(session) }
        let limit = replyLimit
        return try await withCheckedThrowingContinuation { continuation in
            let (id, channel): (Int?, (any Channel)?) = lock.withLock {
                guard !isClosed, let open = self.channel else { return (nil, nil) }
                let id = nextID
                nextID += 1
                pending[id] = (method, continuation)
                return (id, open)
            }
            guard let id, let channel else {
                continuation.resume(throwing: DevToolsError.closed(method: method))
                return
            }
            message["id"] = .number(Double(id))
            let text = JSONValue.object(message).description
            // Client frames are masked (RFC 6455 §5.3); NIO's encoder applies the key.
            let frame = WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: ByteBuffer(string: text))
            channel.writeAndFlush(frame).whenFailure { [weak self] error in
                self?.finish(id: id, with: .failure(DevToolsError.connectFailed(url: method, reason: "send failed: \(error)")))
            }
            DispatchQueue.global().asyncAfter(deadline: .now() + limit.timeInterval) { [weak self] in
                self?.finish(id: id, with: .failure(DevToolsError.noReply(method: method, after: limit)))
            }
        }
    }

    /// Closes the WebSocket; commands still waiting fail with `closed`.
    public func close() async {
        let channel = lock.withLock { () -> (any Channel)? in
            let channel = self.channel
            self.channel = nil
            return channel
        }
        try? await channel?.close()
        failAll()
    }

    // MARK: From the channel handler

    fileprivate func receive(_ text: String) {
        guard let message = try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)),
              let id = message["id"]?.number.map(Int.init) else {
            return  // an event (no id): the tests read state through Runtime.evaluate instead
        }
        if let error = message["error"] {
            let method = lock.withLock { pending[id]?.method } ?? "?"
            finish(id: id, with: .failure(DevToolsError.protocolError(
                method: method, code: Int(error["code"]?.number ?? 0), message: error["message"]?.string ?? "\(error)")))
        } else {
            finish(id: id, with: .success(message["result"] ?? .null))
        }
    }

    fileprivate func failAll() {
        let waiting = lock.withLock { () -> [(method: String, continuation: CheckedContinuation<JSONValue, any Error>)] in
            isClosed = true
            let waiting = Array(pending.values)
            pending.removeAll()
            return waiting
        }
        for entry in waiting { entry.continuation.resume(throwing: DevToolsError.closed(method: entry.method)) }
    }

    private func finish(id: Int, with result: Result<JSONValue, any Error>) {
        let entry = lock.withLock { pending.removeValue(forKey: id) }
        entry?.continuation.resume(with: result)
    }
}

/// Hands text messages to the connection, answers pings, and fails waiting commands when the
/// browser goes away.
private final class DevToolsFrameHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame
    let connection: DevToolsConnection

    init(connection: DevToolsConnection) { self.connection = connection }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text, .binary:
            connection.receive(String(buffer: frame.unmaskedData))
        case .ping:
            let pong = WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData)
            context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
        case .connectionClose:
            context.close(promise: nil)
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        connection.failAll()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        connection.failAll()
        context.close(promise: nil)
    }
}

extension Duration {
    var timeInterval: TimeInterval {
        let (seconds, attoseconds) = components
        return TimeInterval(seconds) + TimeInterval(attoseconds) / 1e18
    }
}
