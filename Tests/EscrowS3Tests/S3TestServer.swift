import Foundation
import Testing
@testable import Escrow
@testable import Age
@testable import EscrowS3

/// The local S3 server the tests use: moto, started by `make s3-up` (which `make test` runs) on
/// loopback, found from KEYLINE_TEST_S3_ENDPOINT or, when `swift test` runs without make, from
/// `.s3/endpoint` in the package. Nothing here ever reaches a real AWS endpoint: the environment
/// given to stores is built here, with throwaway credentials, not taken from the process.
enum S3TestServer {
    static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func endpoint() throws -> String {
        if let value = ProcessInfo.processInfo.environment["KEYLINE_TEST_S3_ENDPOINT"], !value.isEmpty { return value }
        let file = packageRoot.appendingPathComponent(".s3/endpoint")
        guard let text = try? String(contentsOf: file, encoding: .utf8) else {
            throw Unavailable(message: "no local S3 server: run `make s3-up` (or `make test`), or set KEYLINE_TEST_S3_ENDPOINT")
        }
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    struct Unavailable: Error, CustomStringConvertible { let message: String; var description: String { message } }

    /// The variables a station would have, pointing at `endpoint` (default: the server).
    static func environment(endpoint: String? = nil) throws -> [String: String] {
        ["AWS_ENDPOINT_URL": try endpoint ?? self.endpoint(), "AWS_REGION": "us-east-1",
         "AWS_ACCESS_KEY_ID": "keyline-test", "AWS_SECRET_ACCESS_KEY": "keyline-test-secret-never-printed",
         "HOME": "/nonexistent"]
    }

    static func bucketName() -> String {
        "kl-test-" + String((0..<12).map { _ in "abcdefghijklmnopqrstuvwxyz0123456789".randomElement()! })
    }

    /// A store on a fresh bucket (created through the server, not through a proxy).
    static func store(prefix: String = "escrow", query: String = "", objectLock: Bool = false,
                      endpoint: String? = nil, retry: S3RetryPolicy = S3RetryPolicy()) async throws -> S3EscrowStore {
        let bucket = bucketName()
        let direct = try S3EscrowStore(uri: "s3://\(bucket)", environment: environment())
        try await direct.createBucket(objectLock: objectLock)
        return try S3EscrowStore(uri: "s3://\(bucket)/\(prefix)\(query)", environment: environment(endpoint: endpoint), retry: retry)
    }

    static func key(_ n: Int = 0, product: String = "acme-sensor") throws -> EscrowObjectKey {
        let device = String(format: "e00fce68%016x", n)
        return try EscrowObjectKey(product: product, deviceID: device, publicKeySHA256: Age.sha256(Array("key-\(n)".utf8)))
    }

    static func bytes(_ text: String) -> [UInt8] { Array("age-encryption.org/v1 stand-in ciphertext: \(text)".utf8) }
}

/// The fault proxy (Fixtures/s3-fault-proxy.py) in front of the server: 503 SlowDown, dropped
/// connections, lost replies; killed and restarted on the same port to stand for a server restart.
final class FaultProxy: @unchecked Sendable {
    private var process: Process?
    private let output = Pipe()
    private(set) var port: Int
    let arguments: [String]
    private let lock = NSLock()
    private var lines: [String] = []

    static let script = Bundle.module.resourceURL!.appendingPathComponent("Fixtures/s3-fault-proxy.py").path

    init(slowdown: Int = 0, reset: Int = 0, loseReply: Int = 0, stripIfNoneMatch: Bool = false,
         forbidProbe: Bool = false) throws {
        let upstream = try S3TestServer.endpoint().replacingOccurrences(of: "http://", with: "")
        arguments = ["--upstream", upstream, "--slowdown", "\(slowdown)", "--reset", "\(reset)", "--lose-reply", "\(loseReply)"]
            + (stripIfNoneMatch ? ["--strip-if-none-match"] : []) + (forbidProbe ? ["--forbid-probe"] : [])
        port = 0
        try start(port: 0)
    }

    var endpoint: String { "http://127.0.0.1:\(port)" }

    /// Faults injected so far (one line each: "fault KIND METHOD PATH").
    var faults: [String] { lock.withLock { lines.filter { $0.hasPrefix("fault ") } } }

    func start(port requested: Int) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", Self.script, "--port", "\(requested)"] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        self.process = process
        // The first line is "listening PORT"; read it off the pool (a blocking read).
        let handle = pipe.fileHandleForReading
        let first = DispatchSemaphore(value: 0)
        let box = LinesBox()
        Thread.detachNewThread { [weak self] in
            var buffer = Data()
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                buffer += chunk
                while let newline = buffer.firstIndex(of: 0x0a) {
                    let line = String(decoding: buffer[..<newline], as: UTF8.self)
                    buffer = Data(buffer[(newline + 1)...])
                    if line.hasPrefix("listening ") { box.port = Int(line.dropFirst(10)) ?? 0; first.signal() }
                    self?.lock.withLock { self?.lines.append(line) }
                }
            }
            first.signal()
        }
        guard first.wait(timeout: .now() + 20) == .success, box.port > 0 else { throw S3TestServer.Unavailable(message: "fault proxy did not start") }
        port = box.port
    }

    /// Stops the proxy (SIGTERM) and waits for it to exit, so its port is free again.
    func stop() async throws {
        guard let process else { return }
        process.terminate()
        let deadline = ContinuousClock.now + .seconds(3)
        while process.isRunning {
            if ContinuousClock.now > deadline { kill(process.processIdentifier, SIGKILL) }
            try await Task.sleep(for: .milliseconds(20))
        }
        self.process = nil
    }

    deinit { if let process, process.isRunning { kill(process.processIdentifier, SIGKILL) } }
}

private final class LinesBox: @unchecked Sendable { var port = 0 }
