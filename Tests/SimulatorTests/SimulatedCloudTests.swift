import DeviceKeys
import Foundation
import ParticlePlatform
import Simulator
import Testing
import TestSupport

/// The simulated cloud's endpoints over real HTTP (NIO server, AsyncHTTPClient): particle-cli's two
/// calls with their token and validation, product membership, faults, counters and its state file.
@Suite struct SimulatedCloudTests {
    static let token = "sim-token-0123456789"
    static let photonID = "3a0020000d47343233323032"   // STM32: no prefix, protocol from the factory record
    static let boronID = "e00fce68aabbccddeeff0011"

    /// A cloud on a free loopback port and a client for it; `body` runs, then the server stops.
    static func withCloud<T>(products: [String] = [], faults: String = "", stateFile: URL? = nil,
                             _ body: (SimulatedCloud, SimulatedCloudClient) async throws -> T) async throws -> T {
        let cloud = try SimulatedCloud(token: token, products: products, faults: try SimulatedCloudFaults.parse(faults), stateFile: stateFile)
        let server = try await SimulatedCloudServer(cloud: cloud)
        do {
            let result = try await body(cloud, try SimulatedCloudClient(url: server.url))
            await server.stop()
            return result
        } catch {
            await server.stop()
            throw error
        }
    }

    static func upload(_ client: SimulatedCloudClient, _ deviceID: String, _ key: DevicePublicKey, algorithm: String? = nil,
                       token: String? = SimulatedCloudTests.token, product: String? = nil,
                       pathID: String? = nil) async throws -> SimulatedCloudClient.Reply {
        var form = [("deviceID", deviceID), ("publicKey", key.pem), ("filename", "cli"), ("order", "manual_1"),
                    ("algorithm", algorithm ?? (key.algorithm == .rsa ? "rsa" : "ecc"))]
        if let product { form.append(("product_id", product)) }
        return try await client.post("/v1/provisioning/\(pathID ?? deviceID)", form: form,
                                     headers: token.map { ["Authorization": "Bearer \($0)"] } ?? [:])
    }

    static func addToProduct(_ client: SimulatedCloudClient, _ product: String, _ id: String) async throws -> SimulatedCloudClient.Reply {
        try await client.post("/v1/products/\(product)/devices", form: [("id", id)], headers: ["Authorization": "Bearer \(token)"])
    }

    @Test func acceptsAKeyAndHoldsIt() async throws {
        let key = try DevicePrivateKey.generate(.ec).publicKey
        try await Self.withCloud { cloud, client in
            let reply = try await Self.upload(client, Self.boronID, key)
            #expect(reply.status == 200, "\(String(decoding: reply.body, as: UTF8.self))")
            #expect(reply.json["ok"] as? Bool == true)
            #expect(reply.headers["x-request-id"]?.isEmpty == false)
            #expect(cloud.record(for: Self.boronID)?.publicKeySPKI == key.spkiDER)
            #expect(cloud.record(for: Self.boronID)?.keySource == "api")
            let view = try await client.send("GET", "/sim/devices/\(Self.boronID)")
            #expect(view.json["fingerprint"] as? String == key.fingerprint)
            #expect((view.json["calls"] as? [String: Any])?["provisioning"] as? Int == 1)
        }
    }

    @Test func theTokenIsChecked() async throws {
        let key = try DevicePrivateKey.generate(.ec).publicKey
        try await Self.withCloud { cloud, client in
            for token: String? in [nil, "wrong-token", Self.token + "x", ""] {
                let reply = try await Self.upload(client, Self.boronID, key, token: token)
                #expect(reply.status == 401)
                #expect(reply.json["error"] as? String == "invalid_token")
                #expect(reply.json["ok"] as? Bool == false)
                #expect(reply.headers["x-request-id"]?.isEmpty == false)
            }
            let membership = try await client.post("/v1/products/123/devices", form: [("id", Self.boronID)])
            #expect(membership.status == 401)
            #expect(cloud.record(for: Self.boronID) == nil)
            // Refused calls still count: the counters are what the cloud received.
            #expect(cloud.callCounts.provisioning == 4 && cloud.callCounts.productDevices == 1 && cloud.callCounts.keysAccepted == 0)
        }
    }

    @Test func badInputIsA400() async throws {
        let ec = try DevicePrivateKey.generate(.ec)
        let rsa = try DevicePrivateKey.generate(.rsa)
        try await Self.withCloud { cloud, client in
            // The factory record says this STM32 ID is a Photon: TCP, so RSA only.
            let factory = SimulatedCloudClient.FactoryDevice(deviceID: Self.photonID, platform: "photon", publicKey: nil)
            try await client.registerFactory([factory])
            let cases: [(String, SimulatedCloudClient.Reply)] = [
                ("ecc key for a TCP Photon", try await Self.upload(client, Self.photonID, ec.publicKey)),
                ("rsa key for a UDP Boron (by its ID prefix)", try await Self.upload(client, Self.boronID, rsa.publicKey)),
                ("algorithm not matching the key", try await Self.upload(client, Self.boronID, ec.publicKey, algorithm: "rsa")),
                ("algorithm ec (not ecc)", try await Self.upload(client, Self.boronID, ec.publicKey, algorithm: "ec")),
                ("uppercase device ID", try await Self.upload(client, Self.boronID.uppercased(), ec.publicKey)),
                ("short device ID", try await Self.upload(client, "e00fce68", ec.publicKey)),
                ("path and form disagree", try await Self.upload(client, Self.boronID, ec.publicKey, pathID: "e00fce68000000000000000a")),
            ]
            for (what, reply) in cases {
                #expect(reply.status == 400, "\(what): \(reply.status)")
                #expect(reply.json["ok"] as? Bool == false, "\(what)")
                #expect((reply.json["error_description"] as? String)?.isEmpty == false, "\(what)")
            }
            let auth = ["Authorization": "Bearer \(Self.token)"]
            let malformed = try await client.post("/v1/provisioning/\(Self.boronID)", form: [
                ("deviceID", Self.boronID), ("algorithm", "ecc"),
                ("publicKey", "-----BEGIN PUBLIC KEY-----\nnot base64 at all\n-----END PUBLIC KEY-----\n")], headers: auth)
            #expect(malformed.status == 400 && malformed.json["error"] as? String == "invalid_public_key")
            let privatePEM = try await client.post("/v1/provisioning/\(Self.boronID)", form: [
                ("deviceID", Self.boronID), ("algorithm", "ecc"), ("publicKey", try ec.pem())], headers: auth)
            #expect(privatePEM.status == 400)
            let badEscape = try await client.send("POST", "/v1/provisioning/\(Self.boronID)", body: Array("deviceID=%zz".utf8),
                                                  contentType: "application/x-www-form-urlencoded", headers: auth)
            #expect(badEscape.status == 400)
            #expect(cloud.record(for: Self.boronID)?.publicKeySPKI == nil)
            #expect(cloud.record(for: Self.photonID)?.publicKeySPKI == nil)
            // And the right key is taken.
            #expect(try await Self.upload(client, Self.photonID, rsa.publicKey).status == 200)
        }
    }

    @Test func productMembership() async throws {
        try await Self.withCloud(products: ["12345"]) { cloud, client in
            let first = try await Self.addToProduct(client, "12345", Self.boronID)
            #expect(first.status == 200)
            #expect(first.json["updatedDeviceIds"] as? [String] == [Self.boronID])
            let again = try await Self.addToProduct(client, "12345", Self.boronID)
            #expect(again.json["existingDeviceIds"] as? [String] == [Self.boronID])
            #expect(again.json["updatedDeviceIds"] as? [String] == [])
            let invalid = try await Self.addToProduct(client, "12345", "not-a-device")
            #expect(invalid.json["invalidDeviceIds"] as? [String] == ["not-a-device"])
            // A device in another product is not a member of this one.
            let other = "e00fce68000000000000000b"
            #expect(try await client.post("/sim/products/999/devices", form: [("id", other)]).status == 200)
            let nonmember = try await Self.addToProduct(client, "12345", other)
            #expect(nonmember.json["nonmemberDeviceIds"] as? [String] == [other])
            // A product the token does not know.
            let unknown = try await Self.addToProduct(client, "777", Self.boronID)
            #expect(unknown.status == 404 && unknown.json["ok"] as? Bool == false)
            let key = try DevicePrivateKey.generate(.ec).publicKey
            #expect(try await Self.upload(client, other, key, product: "12345").status == 403)
            #expect(try await Self.upload(client, Self.boronID, key, product: "777").status == 404)
            #expect(try await Self.upload(client, Self.boronID, key, product: "12345").status == 200)
            #expect(cloud.record(for: Self.boronID)?.product == "12345")
        }
    }

    @Test func injectedFaults() async throws {
        let key = try DevicePrivateKey.generate(.ec).publicKey
        try await Self.withCloud(faults: "rate-limit=2:7,error=1:502") { cloud, client in
            for _ in 0..<2 {
                let limited = try await Self.upload(client, Self.boronID, key)
                #expect(limited.status == 429)
                #expect(limited.headers["retry-after"] == "7")
                #expect(limited.json["ok"] as? Bool == false)
            }
            #expect(try await Self.upload(client, Self.boronID, key).status == 502)
            #expect(try await Self.upload(client, Self.boronID, key).status == 200)
            #expect(cloud.callCounts(for: Self.boronID).provisioning == 4)
            #expect(cloud.callCounts(for: Self.boronID).keysAccepted == 1)

            // Down at runtime: connections are closed unanswered; the /sim/ endpoints stay up.
            let down = try await client.post("/sim/faults", form: [("spec", "down=600")])
            #expect(down.status == 200)
            await #expect(throws: SimulatedCloudError.self) { _ = try await Self.upload(client, Self.boronID, key) }
            #expect(try await client.send("GET", "/sim/faults").json["faults"] as? String != "none")
            #expect(try await client.post("/sim/faults", form: [("spec", "none")]).status == 200)
            #expect(try await Self.upload(client, Self.boronID, key).status == 200)
            #expect(try await client.post("/sim/faults", form: [("spec", "rate-limit=x")]).status == 400)
        }
    }

    /// `slow=`: the answer comes late but whole (the delayed write path of the server).
    @Test func aSlowCloudStillAnswers() async throws {
        let key = try DevicePrivateKey.generate(.ec).publicKey
        try await Self.withCloud(faults: "slow=0.05") { cloud, client in
            let reply = try await Self.upload(client, Self.boronID, key)
            #expect(reply.status == 200 && reply.headers["x-request-id"]?.isEmpty == false)
            #expect(cloud.currentFaults.slowSeconds == 0.05)
            let again = try await Self.upload(client, Self.boronID, key, token: "bad")
            #expect(again.status == 401)
        }
    }

    @Test func faultSpecsAreChecked() throws {
        for bad in ["rate-limit", "rate-limit=-1", "error=1:404", "slow=inf", "down=99999", "explode=1", "rate-limit=1:2:3"] {
            #expect(throws: SimulatedCloudFaultError.self, "\(bad)") { try SimulatedCloudFaults.parse(bad) }
        }
        let parsed = try SimulatedCloudFaults.parse("rate-limit=3,error=2:500,slow=0.5")
        #expect(parsed.rateLimited == 3 && parsed.retryAfterSeconds == 1 && parsed.serverErrors == 2 && parsed.serverErrorStatus == 500)
        #expect(parsed.slowSeconds == 0.5)
    }

    @Test func countersSeparateAPICallsFromDeviceConnects() async throws {
        let key = try DevicePrivateKey.generate(.ec).publicKey
        try await Self.withCloud { cloud, client in
            #expect(try await Self.upload(client, Self.boronID, key).status == 200)
            _ = try await Self.addToProduct(client, "42", Self.boronID)
            let online = try await client.post("/sim/connect", form: [("deviceID", Self.boronID), ("publicKey", key.pem)])
            #expect(online.status == 200)
            let other = try DevicePrivateKey.generate(.ec).publicKey
            let mismatch = try await client.post("/sim/connect", form: [("deviceID", Self.boronID), ("publicKey", other.pem)])
            #expect(mismatch.status == 403 && mismatch.json["error"] as? String == "key_mismatch")
            let calls = try await client.send("GET", "/sim/calls").json
            #expect(calls["api"] as? Int == 2 && calls["provisioning"] as? Int == 1 && calls["productDevices"] as? Int == 1)
            #expect(calls["connects"] as? Int == 2)
            let perDevice = (calls["devices"] as? [String: Any])?[Self.boronID] as? [String: Any]
            #expect(perDevice?["connects"] as? Int == 2 && perDevice?["api"] as? Int == 2)
            #expect(cloud.callCounts.api == 2)
        }
    }

    @Test func factoryKeysDoNotReplaceAKeyTheCloudHolds() async throws {
        let uploaded = try DevicePrivateKey.generate(.ec).publicKey
        let factory = try DevicePrivateKey.generate(.ec).publicKey
        try await Self.withCloud { cloud, client in
            #expect(try await Self.upload(client, Self.boronID, uploaded).status == 200)
            try await client.registerFactory([.init(deviceID: Self.boronID, platform: "boron", publicKey: factory)])
            #expect(cloud.record(for: Self.boronID)?.publicKeySPKI == uploaded.spkiDER)
            #expect(cloud.record(for: Self.boronID)?.platform == "boron")
        }
    }

    @Test func theStateFileKeepsTheKeysAcrossRestarts() async throws {
        let folder = try ScratchDirectory(label: "sim-cloud")
        let file = folder.file("cloud.json")
        let key = try DevicePrivateKey.generate(.rsa).publicKey
        try await Self.withCloud(stateFile: file) { _, client in
            try await client.registerFactory([.init(deviceID: Self.photonID, platform: "photon", publicKey: nil)])
            #expect(try await Self.upload(client, Self.photonID, key).status == 200)
        }
        #expect(try folder.mode("cloud.json") == 0o600)
        let restarted = try SimulatedCloud(token: Self.token, stateFile: file)
        #expect(restarted.record(for: Self.photonID)?.publicKeySPKI == key.spkiDER)
        #expect(restarted.record(for: Self.photonID)?.platform == "photon")
        #expect(restarted.callCounts.api == 0)
        try Data("{not json".utf8).write(to: file)
        #expect(throws: SimulatedCloudError.self) { try SimulatedCloud(token: Self.token, stateFile: file) }
    }
}
