import FailurePolicy
import Foundation
import Testing
@testable import ParticleCloud
import Registry

@Suite("Particle cloud requests and replies")
struct CloudRequestTests {
    @Test("The upload's form is particle-cli's and survives form encoding byte for byte")
    func provisioningForm() throws {
        let spki = (0..<91).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
        let fields = CloudRequests.provisioningForm(deviceID: "E00FCE68AAAAAAAAAAAAAAAA", spkiDER: spki, algorithm: .ec,
                                                    productID: "12346", order: "keyline_1_2")
        let body = CloudRequests.formEncoded(fields)
        let decoded = Dictionary(uniqueKeysWithValues: body.split(separator: "&").map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1).map {
                String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding!
            }
            return (parts[0], parts[1])
        })
        #expect(decoded["deviceID"] == "e00fce68aaaaaaaaaaaaaaaa")
        #expect(decoded["algorithm"] == "ecc")
        #expect(decoded["filename"] == "cli")
        #expect(decoded["product_id"] == "12346")
        let pem = try #require(decoded["publicKey"])
        #expect(pem.hasPrefix("-----BEGIN PUBLIC KEY-----\n"))
        #expect(pem.hasSuffix("-----END PUBLIC KEY-----\n"))
        let base64 = pem.split(separator: "\n").dropFirst().dropLast().joined()
        #expect(pem.split(separator: "\n").allSatisfy { $0.count <= 64 })
        #expect(Data(base64Encoded: base64).map(Array.init) == spki)
        #expect(!body.contains("\n") && !body.contains("/"))
        let rsa = CloudRequests.provisioningForm(deviceID: "a", spkiDER: spki, algorithm: .rsa, productID: nil, order: "o")
        #expect(rsa.first { $0.0 == "algorithm" }?.1 == "rsa")
        #expect(!rsa.contains { $0.0 == "product_id" })
    }

    @Test("The token goes only over TLS or to a loopback address")
    func apiBase() throws {
        #expect(try ParticleAPIBase("https://api.particle.io").description == "https://api.particle.io")
        #expect(try ParticleAPIBase("http://127.0.0.1:8080/").description == "http://127.0.0.1:8080")
        #expect(try ParticleAPIBase("http://localhost:1/api").url("/v1/x") == "http://localhost:1/api/v1/x")
        #expect(try ParticleAPIBase("http://[::1]:9").origin == "http://[::1]:9")
        for refused in ["http://api.particle.io", "http://10.0.0.5:80", "ftp://127.0.0.1", "api.particle.io",
                        "https://user:pw@api.particle.io", "http://127.0.0.1.evil.example"] {
            #expect(throws: ParticleCloudError.self, "\(refused)") { try ParticleAPIBase(refused) }
        }
        // A password in the URL never comes back in the error.
        do {
            _ = try ParticleAPIBase("https://user:s3cret-pw@api.particle.io")
        } catch {
            #expect(!"\(error)".contains("s3cret-pw"))
        }
        #expect(try ParticleAPIBase.resolve(pipeline: "https://a.example", environment: [:]).origin == "https://a.example")
        #expect(try ParticleAPIBase.resolve(pipeline: "https://a.example",
                                            environment: ["PARTICLE_API_URL": "http://127.0.0.1:5"]).origin == "http://127.0.0.1:5")
        #expect(try ParticleAPIBase.resolve(pipeline: nil, environment: [:]) == .particle)
    }

    @Test("A token never prints; a token file readable by others is refused")
    func token() async throws {
        let token = try ParticleAccessToken("  0123456789abcdef0123456789abcdef01234567\n")
        #expect("\(token)" == "<Particle access token>")
        #expect(String(reflecting: token) == "<Particle access token>")
        #expect(throws: ParticleCloudError.self) { try ParticleAccessToken("a\r\nX-Evil: 1") }
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("kl-token-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let file = folder.appendingPathComponent("token").path
        try Data("secret-token-value\n".utf8).write(to: URL(fileURLWithPath: file))
        chmod(file, 0o644)
        do {
            _ = try await ParticleAccessToken.resolve(tokenFile: file, environment: [:])
            Issue.record("a 0644 token file was accepted")
        } catch let error as ParticleCloudError {
            #expect("\(error)".contains("chmod 600"))
            #expect(!"\(error)".contains("secret-token-value"))
            #expect(error.failureClass == .needsOperator)
        }
        chmod(file, 0o600)
        #expect(try await ParticleAccessToken.resolve(tokenFile: file, environment: [:]).secret == "secret-token-value")
        #expect(try await ParticleAccessToken.resolve(tokenFile: nil, environment: ["PARTICLE_ACCESS_TOKEN": "abc"]).secret == "abc")
        await #expect(throws: ParticleCloudError.noToken) { try await ParticleAccessToken.resolve(tokenFile: nil, environment: [:]) }
    }

    @Test("Replies map to the failure policy: retry, stop all, park")
    func verdicts() {
        func reply(_ status: Int, _ body: String = "{}", retryAfter: String? = nil) -> CloudReply {
            CloudReply(status: status, requestID: "r", retryAfter: CloudReply.retryAfter(retryAfter), body: Array(body.utf8))
        }
        #expect(CloudVerdict.of(reply(200)) == .accepted)
        #expect(CloudVerdict.of(reply(429, retryAfter: "7")) == .retry(after: .seconds(7), problem: "HTTP 429"))
        #expect(CloudVerdict.of(reply(503, retryAfter: "99999999")) == .retry(after: .seconds(3600), problem: "HTTP 503"))
        #expect(CloudVerdict.of(reply(401, #"{"ok":false,"error":"invalid_token"}"#)) == .stopAll)
        #expect(CloudVerdict.of(reply(403)) == .stopAll)
        #expect(CloudVerdict.of(reply(400, #"{"ok":false,"error":"invalid_request","error_description":"bad\u0007 algorithm"}"#))
                == .park(reason: "invalid_request: bad algorithm"))
        #expect(CloudVerdict.of(reply(404)) == .park(reason: "HTTP 404"))
        let members = reply(200, #"{"updatedDeviceIds":[],"existingDeviceIds":["E00FCE68AAAAAAAAAAAAAAAA"],"invalidDeviceIds":[],"nonmemberDeviceIds":[]}"#)
        #expect(members.membership(of: "e00fce68aaaaaaaaaaaaaaaa")?.member == true)
        let refused = reply(200, #"{"updatedDeviceIds":[],"existingDeviceIds":[],"invalidDeviceIds":[],"nonmemberDeviceIds":["e00fce68aaaaaaaaaaaaaaaa"]}"#)
        #expect(refused.membership(of: "e00fce68aaaaaaaaaaaaaaaa")?.listedAs == "nonmemberDeviceIds")
        #expect(reply(200, "[1]").membership(of: "x") == nil)
    }
}
