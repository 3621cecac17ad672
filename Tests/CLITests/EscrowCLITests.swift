import DeviceKeys
import Foundation
import Testing
import TestSupport

/// `keyline escrow …` run as a binary, against Debian's `age` and `age-keygen`.
@Suite struct EscrowCLI {
    /// A keyline identity file in `dir`; returns its recipient as printed.
    static func keygen(_ dir: TemporaryDirectory, _ name: String = "identity.txt") async throws -> String {
        let result = try await KeylineBinary.run(["escrow", "keygen", "-o", name], in: dir.url)
        guard result.status == 0 else { throw CLITestFailure("keygen failed: \(result.stderr)") }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A backup document as the format documents it (built here, independently of Escrow).
    static func backupDocument(_ key: DevicePrivateKey, deviceID: String = "e00fce68a1b2c3d4e5f60718") throws -> [UInt8] {
        let document: [String: Any] = [
            "format": "keyline-escrow-backup", "version": 1, "device_id": deviceID, "platform": key.algorithm == .rsa ? "photon" : "boron",
            "product": "12345", "algorithm": key.algorithm.rawValue, "private_key_der": Data(key.der).base64EncodedString(),
            "public_key_sha256": key.publicKey.fingerprint, "job": "job-7", "station": "line-1", "created_at": "2026-11-21T10:30:00Z",
        ]
        return Array(try JSONSerialization.data(withJSONObject: document, options: [.sortedKeys]))
    }

    @Test func keygenWritesAPrivateAgeIdentity() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let recipient = try await Self.keygen(dir)
        #expect(recipient.hasPrefix("age1"))
        #expect(try dir.mode("identity.txt") == 0o600)
        #expect(try await dir.shell("age-keygen -y identity.txt").trimmingCharacters(in: .whitespacesAndNewlines) == recipient)
        let again = try await KeylineBinary.run(["escrow", "keygen", "-o", "identity.txt", "--json"], in: dir.url)
        #expect(again.status == 73)
        #expect(try again.json()["error"].flatMap { $0 as? [String: Any] }?["kind"] as? String == "outputExists")
    }

    @Test func encryptsForAgeAndDecryptsAgesFiles() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let mine = try await Self.keygen(dir)
        try await dir.shell("age-keygen -o theirs.txt 2>/dev/null")
        let theirs = try await dir.shell("age-keygen -y theirs.txt").trimmingCharacters(in: .whitespacesAndNewlines)
        try dir.write("recipients.txt", Array("# officers\n\n\(theirs)\n".utf8))
        let plaintext = (0..<150_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        try dir.write("plain.bin", plaintext)

        for armor in [false, true] {
            let out = armor ? "out.txt" : "out.age"
            let result = try await KeylineBinary.run(["escrow", "encrypt", "-r", mine, "-R", "recipients.txt", "-o", out, "--json"]
                                               + (armor ? ["-a"] : []) + ["plain.bin"], in: dir.url)
            #expect(result.status == 0, "\(result.stderr)")
            #expect(try result.json()["sha256"] as? String == (try await dir.shell("sha256sum \(out)").prefix(64)).description)
            // Both recipients' identities open it with `age`.
            try await dir.shell("age -d -i identity.txt -o back1.bin \(out) && cmp back1.bin plain.bin && rm back1.bin")
            try await dir.shell("age -d -i theirs.txt -o back2.bin \(out) && cmp back2.bin plain.bin && rm back2.bin")
        }

        try await dir.shell("age -r \(mine) -o from-age.age plain.bin && age -a -r \(mine) -o from-age.txt plain.bin")
        for file in ["from-age.age", "from-age.txt"] {
            let result = try await KeylineBinary.run(["escrow", "decrypt", "-i", "identity.txt", "-o", "\(file).out", file], in: dir.url)
            #expect(result.status == 0, "\(result.stderr)")
            #expect(try dir.read("\(file).out") == plaintext)
            #expect(try dir.mode("\(file).out") == 0o600)
        }
        // Standard input to standard output.
        try await dir.shell("echo 'a line of text' | age -a -r \(theirs) > text.txt")
        let piped = try await KeylineBinary.run(["escrow", "decrypt", "-i", "theirs.txt"], in: dir.url, stdin: Data(try dir.read("text.txt")))
        #expect(piped.status == 0)
        #expect(piped.stdout == "a line of text\n")
    }

    @Test func failuresAreClassifiedAndWriteNothing() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let recipient = try await Self.keygen(dir)
        _ = try await Self.keygen(dir, "other.txt")
        try await dir.shell("echo secret-ish > plain.txt")
        #expect(try await KeylineBinary.run(["escrow", "encrypt", "-r", recipient, "-o", "good.age", "plain.txt"], in: dir.url).status == 0)
        let good = try dir.read("good.age")

        func decrypt(_ bytes: [UInt8], identity: String = "identity.txt") async throws -> (Int32, String?) {
            try dir.write("case.age", bytes)
            let result = try await KeylineBinary.run(["escrow", "decrypt", "-i", identity, "-o", "case.out", "--json", "case.age"], in: dir.url)
            #expect(!FileManager.default.fileExists(atPath: dir.path("case.out")), "output written on failure")
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir.url.path).allSatisfy { !$0.hasSuffix(".tmp") })
            let kind = try? result.json()["error"].flatMap { $0 as? [String: Any] }?["kind"] as? String
            return (result.status, kind)
        }
        #expect(try await decrypt(good, identity: "other.txt") == (77, "noIdentityMatched"))
        #expect(try await decrypt(Array(good.prefix(40))) == (65, "truncated"))
        let header = good.firstRange(of: Array("---".utf8))!.lowerBound
        #expect(try await decrypt(Array(good.prefix(header + 64))) == (65, "truncated")) // header done, nonce cut
        var flipped = good
        flipped[good.count - 3] ^= 0x01
        #expect(try await decrypt(flipped) == (65, "payloadAuthenticationFailed"))
        flipped = good
        flipped[30] ^= 0x01 // inside the X25519 share: a different recipient
        let shareFlip = try await decrypt(flipped)
        #expect(shareFlip.0 == 65 || shareFlip.0 == 77)
        #expect(try await decrypt(Array("hello".utf8)) == (65, "notAnAgeFile"))

        let missing = try await KeylineBinary.run(["escrow", "encrypt", "-o", "x.age", "plain.txt"], in: dir.url)
        #expect(missing.status == 64)
        let bad = try await KeylineBinary.run(["escrow", "encrypt", "-r", "age1notarecipient", "-o", "x.age", "plain.txt"], in: dir.url)
        #expect(bad.status == 64)
        #expect(bad.stderr.contains("age1notareci"))
    }

    @Test(arguments: [KeyAlgorithm.rsa, .ec])
    func showRevealsTheKeyOnlyWhenAsked(algorithm: KeyAlgorithm) async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let recipient = try await Self.keygen(dir)
        let key = try DevicePrivateKey.generate(algorithm)
        try dir.write("backup.json", try Self.backupDocument(key))
        #expect(try await KeylineBinary.run(["escrow", "encrypt", "-r", recipient, "-o", "backup.age", "backup.json"], in: dir.url).status == 0)
        let keyBase64 = Data(key.der).base64EncodedString()

        let shown = try await KeylineBinary.run(["escrow", "show", "-i", "identity.txt", "backup.age"], in: dir.url)
        #expect(shown.status == 0, "\(shown.stderr)")
        #expect(shown.stdout.contains(key.publicKey.fingerprint) && shown.stdout.contains("e00fce68a1b2c3d4e5f60718"))
        #expect(!shown.stdout.contains("PRIVATE KEY") && !shown.stdout.contains(keyBase64.prefix(20)))
        let json = try await KeylineBinary.run(["escrow", "show", "-i", "identity.txt", "--json", "backup.age"], in: dir.url).json()
        #expect(json["public_key_sha256"] as? String == key.publicKey.fingerprint)
        #expect(json["object_key"] as? String == "12345/e00fce68a1b2c3d4e5f60718/\(key.publicKey.fingerprint).age")
        #expect(json["private_key_der"] == nil)

        let revealed = try await KeylineBinary.run(["escrow", "show", "-i", "identity.txt", "--reveal-key", "--json", "backup.age"], in: dir.url).json()
        #expect(revealed["private_key_der"] as? String == keyBase64)
        #expect((revealed["private_key_pem"] as? String)?.contains("PRIVATE KEY") == true)
    }

    @Test func showRefusesAKeyThatDoesNotMatchItsFingerprint() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let recipient = try await Self.keygen(dir)
        let key = try DevicePrivateKey.generate(.ec), other = try DevicePrivateKey.generate(.ec)
        var document = try #require(JSONSerialization.jsonObject(with: Data(try Self.backupDocument(key))) as? [String: Any])
        document["public_key_sha256"] = other.publicKey.fingerprint
        try dir.write("backup.json", Array(try JSONSerialization.data(withJSONObject: document)))
        #expect(try await KeylineBinary.run(["escrow", "encrypt", "-r", recipient, "-o", "backup.age", "backup.json"], in: dir.url).status == 0)
        let result = try await KeylineBinary.run(["escrow", "show", "-i", "identity.txt", "backup.age"], in: dir.url)
        #expect(result.status == 65)
        #expect(result.stderr.contains("not the recorded"))
    }

    @Test func verifyChecksTheRecordedHash() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let recipient = try await Self.keygen(dir)
        try dir.write("backup.json", try Self.backupDocument(try DevicePrivateKey.generate(.rsa)))
        #expect(try await KeylineBinary.run(["escrow", "encrypt", "-r", recipient, "-o", "backup.age", "backup.json"], in: dir.url).status == 0)
        let digest = String(try await dir.shell("sha256sum backup.age").prefix(64))

        let ok = try await KeylineBinary.run(["escrow", "verify", "backup.age", "--sha256", digest, "--json"], in: dir.url)
        #expect(ok.status == 0)
        #expect(try ok.json()["decrypted"] as? Bool == false)
        let full = try await KeylineBinary.run(["escrow", "verify", "backup.age", "--sha256", digest.uppercased(), "-i", "identity.txt", "--json"], in: dir.url)
        #expect(try full.json()["decrypted"] as? Bool == true)
        #expect(try full.json()["device_id"] as? String == "e00fce68a1b2c3d4e5f60718")

        var tampered = try dir.read("backup.age")
        tampered[tampered.count - 1] ^= 0x80
        try dir.write("tampered.age", tampered)
        let mismatch = try await KeylineBinary.run(["escrow", "verify", "tampered.age", "--sha256", digest, "--json"], in: dir.url)
        #expect(mismatch.status == 65)
        #expect(try mismatch.json()["error"].flatMap { $0 as? [String: Any] }?["kind"] as? String == "checksumMismatch")
        #expect(try await KeylineBinary.run(["escrow", "verify", "backup.age", "--sha256", "abc"], in: dir.url).status == 64)
    }
}

@Suite struct EscrowBackupCLI {
    @Test func backupGoesToTheStoreOnceAndAgeReadsIt() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let recipient = try await EscrowCLI.keygen(dir)
        #expect(try await KeylineBinary.run(["keys", "new", "--platform", "boron", "boron"], in: dir.url).status == 0)
        let key = try DevicePrivateKey(der: try dir.read("boron.der"))
        let arguments = ["escrow", "backup", "boron.der", "--device-id", "E00FCE68A1B2C3D4E5F60718", "--platform", "boron",
                         "--product", "acme-sensor", "--job", "job-1", "--station", "line-1", "-r", recipient, "--store", "escrow", "--json"]
        let first = try await KeylineBinary.run(arguments, in: dir.url)
        #expect(first.status == 0, "\(first.stderr)")
        let json = try first.json()
        let objectKey = "acme-sensor/e00fce68a1b2c3d4e5f60718/\(key.publicKey.fingerprint).age"
        #expect(json["object_key"] as? String == objectKey)
        #expect(try dir.mode("escrow/\(objectKey)") == 0o400)  // owner-only and read-only
        let digest = try #require(json["sha256"] as? String)
        #expect(try await dir.shell("sha256sum escrow/\(objectKey)").hasPrefix(digest))

        // `age` decrypts the stored object to the documented JSON holding the same key.
        let document = try await dir.shell("age -d -i identity.txt escrow/\(objectKey)")
        let object = try #require(JSONSerialization.jsonObject(with: Data(document.utf8)) as? [String: Any])
        #expect(object["private_key_der"] as? String == Data(key.der).base64EncodedString())
        #expect(object["device_id"] as? String == "e00fce68a1b2c3d4e5f60718")
        #expect(object["platform"] as? String == "boron")

        // A second escrow of the same key never replaces the object.
        let before = try dir.read("escrow/\(objectKey)")
        let second = try await KeylineBinary.run(arguments, in: dir.url)
        #expect(second.status == 73)
        #expect(try dir.read("escrow/\(objectKey)") == before)
        #expect(try await KeylineBinary.run(["escrow", "verify", "escrow/\(objectKey)", "--sha256", digest, "-i", "identity.txt"], in: dir.url).status == 0)

        // The key must suit the platform, and the device ID its format.
        var wrong = arguments
        wrong[wrong.firstIndex(of: "--platform")! + 1] = "photon"
        #expect(try await KeylineBinary.run(wrong, in: dir.url).status == 65)
        var badID = arguments
        badID[badID.firstIndex(of: "--device-id")! + 1] = "xyz"
        #expect(try await KeylineBinary.run(badID, in: dir.url).status == 64)
    }
}
