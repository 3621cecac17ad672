import DeviceKeys
import Escrow
import EscrowS3
import Foundation
import Testing
import TestSupport

/// `keyline escrow backup --store s3://bucket/prefix` against the local S3 server (`make s3-up`;
/// KEYLINE_TEST_S3_ENDPOINT, or .s3/endpoint in the package when run without make).
@Suite struct EscrowS3CLITests {
    static func endpoint() throws -> String {
        if let value = ProcessInfo.processInfo.environment["KEYLINE_TEST_S3_ENDPOINT"], !value.isEmpty { return value }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        guard let text = try? String(contentsOf: root.appendingPathComponent(".s3/endpoint"), encoding: .utf8) else {
            throw CLITestFailure("no local S3 server: run `make s3-up` (or `make test`), or set KEYLINE_TEST_S3_ENDPOINT")
        }
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test func backupGoesToTheObjectStoreOnce() async throws {
        let endpoint = try Self.endpoint()
        // Throwaway credentials; the endpoint is in the URI too, so no AWS_* variable of the
        // developer's can send this anywhere but the local server.
        let environment = ["AWS_ACCESS_KEY_ID": "keyline-test", "AWS_SECRET_ACCESS_KEY": "keyline-test-secret-never-printed",
                           "AWS_SESSION_TOKEN": "", "AWS_PROFILE": "", "AWS_REGION": "us-east-1",
                           "AWS_ENDPOINT_URL": endpoint, "AWS_ENDPOINT_URL_S3": endpoint]
        let bucket = "kl-cli-" + UUID().uuidString.prefix(12).lowercased()
        try await S3EscrowStore(uri: "s3://\(bucket)", environment: environment).createBucket()

        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let recipient = try await EscrowCLI.keygen(dir)
        #expect(try await KeylineBinary.run(["keys", "new", "--platform", "boron", "boron"], in: dir.url).status == 0)
        let key = try DevicePrivateKey(der: try dir.read("boron.der"))
        let store = "s3://\(bucket)/line-1?endpoint=\(endpoint)"
        let arguments = ["escrow", "backup", "boron.der", "--device-id", "e00fce68a1b2c3d4e5f60718", "--platform", "boron",
                         "--product", "acme-sensor", "--job", "job-1", "--station", "line-1", "-r", recipient, "--store", store, "--json"]
        let first = try await KeylineBinary.run(arguments, in: dir.url, environment: environment)
        #expect(first.status == 0, "\(first.stderr)")
        let json = try first.json()
        let objectKey = "acme-sensor/e00fce68a1b2c3d4e5f60718/\(key.publicKey.fingerprint).age"
        #expect(json["object_key"] as? String == objectKey)
        #expect(json["file"] as? String == "s3://\(bucket)/line-1/\(objectKey)")
        let digest = try #require(json["sha256"] as? String)

        // Read back through the store: the bytes the CLI reported.
        let reader = try S3EscrowStore(uri: "s3://\(bucket)/line-1", environment: environment)
        let objectKeyValue = try EscrowObjectKey(product: "acme-sensor", deviceID: "e00fce68a1b2c3d4e5f60718",
                                                 publicKeySHA256: key.publicKey.fingerprint)
        let stored = try await reader.get(objectKeyValue, expectedSHA256: digest)
        try dir.write("stored.age", stored)
        #expect(try await KeylineBinary.run(["escrow", "verify", "stored.age", "--sha256", digest, "-i", "identity.txt"], in: dir.url).status == 0)

        // A second escrow of the same key (new random ciphertext) is refused, exit 73, and the
        // message names the object, never the credentials.
        let second = try await KeylineBinary.run(arguments, in: dir.url, environment: environment)
        #expect(second.status == 73, "\(second.stdout) \(second.stderr)")
        #expect(!(second.stdout + second.stderr).contains("keyline-test-secret"))
        #expect(try await reader.get(objectKeyValue, expectedSHA256: digest) == stored)

        // A store URI keyline cannot use is a configuration error (78), before anything is sent.
        var bad = arguments
        bad[bad.firstIndex(of: "--store")! + 1] = "s3://Not_A_Bucket/x"
        #expect(try await KeylineBinary.run(bad, in: dir.url, environment: environment).status == 78)
        // A bucket that does not exist: the store's error code, bucket and key, exit 69, no secret.
        bad[bad.firstIndex(of: "--store")! + 1] = "s3://\(bucket)-missing/x?endpoint=\(endpoint)"
        let missing = try await KeylineBinary.run(bad, in: dir.url, environment: environment)
        #expect(missing.status == 69, "\(missing.stdout) \(missing.stderr)")
        let said = missing.stdout + missing.stderr
        #expect(said.contains("NoSuchBucket") && said.contains("\(bucket)-missing") && !said.contains("keyline-test-secret"))
    }
}
