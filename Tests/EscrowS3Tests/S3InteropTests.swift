import DeviceKeys
import Foundation
import Testing
import TestSupport
@testable import Escrow
@testable import Age

/// keyline's objects in S3 are ordinary objects other tools read, and the store's write-once
/// holds against other tools' writes: the `aws` CLI (PyPI awscli) and Debian's `age`.
@Suite(.serialized) struct S3InteropTests {
    static func aws(_ arguments: [String], stdin: [UInt8]? = nil) async throws -> ChildProcess.Result {
        let environment = try S3TestServer.environment()
        let assignments = environment.map { "\($0.key)=\($0.value)" }.sorted()
        return try await ChildProcess.run("/usr/bin/env", assignments + ["AWS_PAGER=", "aws"] + arguments, stdin: stdin,
                                          timeout: .seconds(120))
    }

    @Test func awsCLIReadsWhatKeylineWroteAndAgeDecryptsIt() async throws {
        let store = try await S3TestServer.store(prefix: "site-1")
        let identity = X25519Identity.generate()
        let key = try DevicePrivateKey.generate(.ec)
        let backup = try EscrowBackup(deviceID: "e00fce68a1b2c3d4e5f60718", platform: "boron", product: "acme-sensor",
                                      privateKey: key, job: "job-7", station: "line-2")
        let sealed = try backup.seal(to: [identity.recipient])
        let digest = try await store.put(sealed.ciphertext, at: sealed.objectKey)

        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let objectKey = "site-1/acme-sensor/e00fce68a1b2c3d4e5f60718/\(sealed.publicKeySHA256).age"
        let copy = try await Self.aws(["s3", "cp", "s3://\(store.settings.bucket)/\(objectKey)", dir.url.appendingPathComponent("b.age").path])
        #expect(copy.status == 0, "\(copy.stderr)")
        #expect(Age.sha256(try dir.read("b.age")) == digest)
        // The store kept the SHA-256 checksum keyline sent (base64, as S3 reports it).
        let head = try await Self.aws(["s3api", "head-object", "--bucket", store.settings.bucket, "--key", objectKey, "--checksum-mode", "ENABLED"])
        #expect(head.status == 0, "\(head.stderr)")
        let expectedChecksum = Data(try #require(Data(hexString: digest))).base64EncodedString()
        #expect(head.stdout.contains(expectedChecksum), "\(head.stdout)")

        try dir.write("identity.txt", Array((identity.secretKeyString() + "\n").utf8))
        let plain = try await ChildProcess.run(try ChildProcess.locate("age").path, ["-d", "-i", dir.url.appendingPathComponent("identity.txt").path,
                                                                                     dir.url.appendingPathComponent("b.age").path])
        #expect(plain.status == 0, "\(plain.stderr)")
        let document = try #require(JSONSerialization.jsonObject(with: Data(plain.stdout.utf8)) as? [String: Any])
        #expect(document["private_key_der"] as? String == Data(key.der).base64EncodedString())
        #expect(document["device_id"] as? String == "e00fce68a1b2c3d4e5f60718")
    }

    @Test func anObjectTheAwsCLIPutIsNeverOverwritten() async throws {
        let store = try await S3TestServer.store(prefix: "escrow")
        let key = try S3TestServer.key(50)
        let foreign = Array("not keyline's backup".utf8)
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        try dir.write("foreign.bin", foreign)
        let put = try await Self.aws(["s3api", "put-object", "--bucket", store.settings.bucket, "--key", store.settings.objectName(key),
                                      "--body", dir.path("foreign.bin")])
        #expect(put.status == 0, "\(put.stderr)")
        let mine = S3TestServer.bytes("keyline")
        await #expect(throws: EscrowStoreError.objectExists(key, storedSHA256: Age.sha256(foreign), newSHA256: Age.sha256(mine))) {
            try await store.put(mine, at: key)
        }
        #expect(try await store.get(key, expectedSHA256: Age.sha256(foreign)) == foreign)
    }
}

extension Data {
    init?(hexString: String) {
        var bytes: [UInt8] = []
        var index = hexString.startIndex
        while index < hexString.endIndex {
            let next = hexString.index(index, offsetBy: 2)
            guard let byte = UInt8(hexString[index..<next], radix: 16) else { return nil }
            bytes.append(byte)
            index = next
        }
        self.init(bytes)
    }
}
