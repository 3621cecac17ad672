import AsyncHTTPClient
import DeviceKeys
import Foundation
import NIOCore
import NIOHTTP1

/// Bounded retries with exponential backoff (and jitter) for the store's own transient failures.
public struct S3RetryPolicy: Sendable, Hashable {
    /// Attempts per request, the first included.
    public var attempts: Int
    public var initialBackoff: Duration
    public var maxBackoff: Duration
    /// Deadline of one attempt (connect, send, reply).
    public var requestTimeout: Duration

    public init(attempts: Int = 6, initialBackoff: Duration = .milliseconds(200), maxBackoff: Duration = .seconds(3),
                requestTimeout: Duration = .seconds(30)) {
        self.attempts = max(1, attempts)
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
        self.requestTimeout = requestTimeout
    }
}

/// One HTTP client for every S3 store in the process: async-http-client on SwiftNIO's shared
/// event loops (non-blocking; nothing here runs on or blocks Swift's cooperative pool), TLS with
/// full certificate verification (its default), no redirects (a signed request is never sent to
/// another host), up to 32 connections per host so 16 concurrent puts do not queue.
let s3HTTPClient: HTTPClient = {
    var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow,
                                                 timeout: .init(connect: .seconds(10), read: .seconds(30)))
    configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 32
    return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
}()

/// A reply from the store (bodies are small: escrow objects and error documents).
struct S3Response: Sendable {
    var status: Int
    var headers: HTTPHeaders
    var body: [UInt8]
}

/// Signs and sends S3 REST requests; retries what `S3StoreError.isRetryable` allows.
struct S3Client: Sendable {
    let settings: S3StoreSettings
    let credentials: AWSCredentials
    let retry: S3RetryPolicy

    static let maximumBody = 16 * 1024 * 1024

    /// Sends `method` to object `name` ("" for the bucket itself) and returns any reply the store
    /// gave, errors included, after retrying the retryable ones. `operation` names the call in errors.
    func send(_ method: HTTPMethod, operation: String, name: String, query: [(name: String, value: String)] = [],
              headers extra: [(name: String, value: String)] = [], body: [UInt8] = []) async throws -> S3Response {
        var attempt = 0
        var backoff = retry.initialBackoff
        while true {
            attempt += 1
            let failure: S3StoreError
            do {
                let response = try await once(method, operation: operation, name: name, query: query, headers: extra, body: body)
                guard let error = error(from: response, operation: operation, name: name), error.isRetryable else { return response }
                failure = error
            } catch let error as S3StoreError {
                guard error.isRetryable else { throw error }
                failure = error
            }
            guard attempt < retry.attempts else { throw failure }
            try await Task.sleep(for: backoff * Double.random(in: 0.5...1.0))
            backoff = min(backoff * 2, retry.maxBackoff)
        }
    }

    /// One signed attempt; transport failures become `.transport`.
    private func once(_ method: HTTPMethod, operation: String, name: String, query: [(name: String, value: String)],
                      headers extra: [(name: String, value: String)], body: [UInt8]) async throws -> S3Response {
        let (host, path) = settings.location(of: name)
        let payloadSHA256 = SHA256Digest.hex(body)
        var headers: [(name: String, value: String)] = [("Host", host), ("x-amz-content-sha256", payloadSHA256)] + extra
        let signer = SigV4Signer(region: settings.region, service: "s3", normalizePath: false)
        headers += signer.sign(.init(method: method.rawValue, path: path, query: query, headers: headers, payloadSHA256: payloadSHA256),
                               credentials: credentials, date: Date())
        let encodedQuery = query.map { "\(SigV4Signer.encode($0.name, keepSlash: false))=\(SigV4Signer.encode($0.value, keepSlash: false))" }
            .joined(separator: "&")
        let scheme = settings.endpoint.scheme!.lowercased()
        var request = HTTPClientRequest(url: "\(scheme)://\(host)\(SigV4Signer.encode(path, keepSlash: true))"
                                        + (encodedQuery.isEmpty ? "" : "?\(encodedQuery)"))
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if !body.isEmpty || method == .PUT { request.body = .bytes(ByteBuffer(bytes: body)) }
        let (seconds, attoseconds) = retry.requestTimeout.components
        let timeout = TimeAmount.nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
        do {
            let response = try await s3HTTPClient.execute(request, timeout: timeout)
            var buffer = try await response.body.collect(upTo: Self.maximumBody)
            let bytes = buffer.readBytes(length: buffer.readableBytes) ?? []
            return S3Response(status: Int(response.status.code), headers: response.headers, body: bytes)
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw S3StoreError.transport(operation: operation, bucket: settings.bucket, key: name, reason: Self.describe(error))
        }
    }

    /// The error a reply stands for, or nil for 2xx/3xx (304 included).
    func error(from response: S3Response, operation: String, name: String) -> S3StoreError? {
        guard response.status >= 400 else { return nil }
        let text = String(decoding: response.body.prefix(64 * 1024), as: UTF8.self)
        let code = Self.element("Code", in: text) ?? HTTPResponseStatus(statusCode: response.status).reasonPhrase.replacingOccurrences(of: " ", with: "")
        return .http(operation: operation, bucket: settings.bucket, key: name, status: response.status, code: code,
                     message: Self.element("Message", in: text) ?? "",
                     requestID: Self.element("RequestId", in: text) ?? response.headers.first(name: "x-amz-request-id"))
    }

    /// The text of the first `<name>…</name>` in an S3 error document (entities for & < > " ' decoded).
    static func element(_ name: String, in xml: String) -> String? {
        guard let start = xml.range(of: "<\(name)>"), let end = xml.range(of: "</\(name)>", range: start.upperBound..<xml.endIndex) else {
            return nil
        }
        return String(xml[start.upperBound..<end.lowerBound])
            .replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
            .replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&apos;", with: "'")
            .replacingOccurrences(of: "&amp;", with: "&")
    }

    /// A transport error in words (AHC's and NIO's errors describe themselves without request data).
    static func describe(_ error: any Error) -> String {
        if let client = error as? HTTPClientError {
            switch client {
            case .deadlineExceeded, .readTimeout, .writeTimeout: return "timed out"
            case .connectTimeout: return "connect timed out"
            case .remoteConnectionClosed: return "the connection was closed by the store"
            default: return String(describing: client)
            }
        }
        return String(describing: error)
    }
}
