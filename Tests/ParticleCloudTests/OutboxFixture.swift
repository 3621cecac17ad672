import Foundation
@testable import ParticleCloud
import Registry
import TestSupport

/// Keys registered outside a job (as the bench does) with an upload queued, in a database of its own.
struct OutboxFixture: Sendable {
    let registry: RegistryDatabase
    static let product = "12346"
    static let station = "bench-01"

    static func make(_ registry: RegistryDatabase) async throws -> OutboxFixture {
        _ = try await registry.createProduct(id: product, name: "Acme Boron Tracker", platform: "boron")
        return OutboxFixture(registry: registry)
    }

    static func deviceID(_ n: Int) -> String { String(format: "e00fce68%016x", n) }

    /// Registers a random stand-in key for the device (escrow object first, as the registry
    /// requires) and queues its upload when `queue`.
    @discardableResult
    func register(_ n: Int, queue: Bool = true) async throws -> KeyRegistration {
        let spki = (0..<91).map { _ in UInt8.random(in: 0...255) }
        let rows = try await registry.client.query("SELECT encode(sha256($1), 'hex') AS f", [PostgresValue.bytea(spki)])
        let fingerprint: String = try rows[0].decode("f")
        let deviceID = Self.deviceID(n)
        let object = try await registry.recordEscrowObject(NewEscrowObject(
            productID: Self.product, deviceID: deviceID, publicKeySHA256: fingerprint, storeURI: "file:///escrow",
            objectKey: "\(Self.product)/\(deviceID)/\(fingerprint).age", ciphertextSHA256: String(repeating: "ab", count: 32),
            sizeBytes: 100, recipients: ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"],
            jobID: nil, station: Self.station))
        var registration = NewKeyRegistration(productID: Self.product, deviceID: deviceID, algorithm: .ec, spkiDER: spki,
                                              fingerprint: fingerprint, escrowObjectID: object.id, jobID: nil,
                                              station: Self.station)
        registration.queueCloudUpload = queue
        return try await registry.registerKey(registration, superseding: false, reason: "test").registered
    }

    func drainer(_ cloud: ScriptedCloud, inFlight: Int = 4, joinProduct: Bool = true) throws -> CloudOutboxDrainer {
        CloudOutboxDrainer(registry: registry,
                           client: ParticleCloudClient(api: try ParticleAPIBase(cloud.url),
                                                       token: try ParticleAccessToken("test-token-never-logged"),
                                                       requestTimeout: .seconds(20)),
                           station: Self.station, inFlight: inFlight, joinProduct: joinProduct,
                           initialBackoff: .milliseconds(50), maxBackoff: .milliseconds(200))
    }
}
