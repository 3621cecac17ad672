import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Registry

/// One HTTP client for the Particle cloud in the process: AsyncHTTPClient on SwiftNIO's shared
/// event loops (non-blocking, nothing on the cooperative pool), TLS verification on (its
/// default), no redirects (a token is never sent to another host).
let cloudHTTPClient: HTTPClient = {
    var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow,
                                                 timeout: .init(connect: .seconds(10), read: .seconds(30)))
    configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 64
    return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
}()

/// The Particle Cloud API calls keyline makes, one attempt each (the outbox decides on retries).
public struct ParticleCloudClient: Sendable {
    public let api: ParticleAPIBase
    let token: ParticleAccessToken
    public let requestTimeout: Duration

    public init(api: ParticleAPIBase, token: ParticleAccessToken, requestTimeout: Duration = .seconds(30)) {
        self.api = api
        self.token = token
        self.requestTimeout = requestTimeout
    }

    /// particle-cli's `keys send`: `POST /v1/provisioning/{deviceId}`.
    public func sendPublicKey(deviceID: String, spkiDER: [UInt8], algorithm: RegisteredKeyAlgorithm,
                              productID: String?, order: String) async -> CloudAttempt {
        let form = CloudRequests.provisioningForm(deviceID: deviceID, spkiDER: spkiDER, algorithm: algorithm,
                                                  productID: productID, order: order)
        return await post("/v1/provisioning/\(CloudRequests.pathSegment(deviceID.lowercased()))", form: form)
    }

    /// `POST /v1/products/{product}/devices` with `id=`: adds the device to the product.
    public func addToProduct(_ productID: String, deviceID: String) async -> CloudAttempt {
        await post("/v1/products/\(CloudRequests.pathSegment(productID))/devices",
                   form: CloudRequests.membershipForm(deviceID: deviceID))
    }

    /// `GET /v1/user` (particle-cli's `whoami`): answers 200 only to a valid token, and changes
    /// nothing; `keyline station check` asks it before a shift.
    public func currentUser() async -> CloudAttempt {
        var request = HTTPClientRequest(url: api.url("/v1/user"))
        request.method = .GET
        request.headers.add(name: "Authorization", value: token.authorization)
        request.headers.add(name: "Accept", value: "application/json")
        return await execute(request)
    }

    func post(_ endpoint: String, form: [(String, String)]) async -> CloudAttempt {
        var request = HTTPClientRequest(url: api.url(endpoint))
        request.method = .POST
        request.headers.add(name: "Authorization", value: token.authorization)
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        request.headers.add(name: "Accept", value: "application/json")
        request.body = .bytes(ByteBuffer(string: CloudRequests.formEncoded(form)))
        return await execute(request)
    }

    private func execute(_ request: HTTPClientRequest) async -> CloudAttempt {
        let (seconds, attoseconds) = requestTimeout.components
        do {
            let response = try await cloudHTTPClient.execute(
                request, timeout: .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000))
            var buffer = try await response.body.collect(upTo: 256 * 1024)
            return .reply(CloudReply(status: Int(response.status.code),
                                     requestID: response.headers.first(name: "X-Request-Id").flatMap { CloudReply.printable($0) },
                                     retryAfter: CloudReply.retryAfter(response.headers.first(name: "Retry-After")),
                                     body: buffer.readBytes(length: buffer.readableBytes) ?? []))
        } catch is CancellationError {
            return .cancelled
        } catch {
            return .noReply(Self.describe(error))
        }
    }

    /// A transport failure in words (AHC's and NIO's errors describe themselves without request
    /// headers, so the token is never in them).
    static func describe(_ error: any Error) -> String {
        if let client = error as? HTTPClientError {
            switch client {
            case .deadlineExceeded, .readTimeout, .writeTimeout: return "the Particle cloud did not answer in time"
            case .connectTimeout: return "connecting to the Particle cloud timed out"
            case .remoteConnectionClosed: return "the Particle cloud closed the connection"
            case .cancelled: return "cancelled"
            default: return "HTTP client: \(client)"
            }
        }
        return "cannot reach the Particle cloud: \(error)"
    }
}

/// One attempt: a reply, or none (timeout, refused connection, TLS failure), or cancelled.
public enum CloudAttempt: Sendable, Hashable {
    case reply(CloudReply)
    case noReply(String)
    case cancelled

    public var verdict: CloudVerdict? {
        switch self {
        case .reply(let reply): CloudVerdict.of(reply)
        case .noReply(let problem): .retry(after: nil, problem: problem)
        case .cancelled: nil
        }
    }
}
