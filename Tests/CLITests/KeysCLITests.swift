import DeviceKeys
import Foundation
import Testing
import TestSupport

@Suite struct KeysNewCLI {
    @Test func writesParticleFileSetWithPrivateModes() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        for (platform, algorithm, length) in [("photon", "rsa", 612), ("boron", "ec", 121)] {
            let result = try await KeylineBinary.run(["keys", "new", "--platform", platform, "--json", "\(platform).der"], in: dir.url)
            #expect(result.status == 0, "\(result.stderr)")
            let json = try result.json()
            #expect(json["algorithm"] as? String == algorithm)
            // `NAME.der` names the set: particle-cli's filenameNoExt.
            #expect(json["files"] as? [String] == ["\(platform).pem", "\(platform).pub.pem", "\(platform).der"])
            #expect(try dir.mode("\(platform).pem") == 0o600)
            #expect(try dir.mode("\(platform).der") == 0o600)
            #expect(try dir.mode("\(platform).pub.pem") == 0o644)
            let der = try dir.read("\(platform).der")
            #expect(der.count <= length)
            // openssl agrees on the public key and the fingerprint.
            let tool = algorithm == "rsa" ? "rsa" : "ec"
            let spki = try await dir.shell("openssl \(tool) -inform DER -in \(platform).der -pubout -outform DER | openssl dgst -sha256 -r")
            #expect(spki.hasPrefix(json["fingerprint"] as! String))
            let pub = try await dir.shell("openssl pkey -pubin -in \(platform).pub.pem -outform DER | openssl dgst -sha256 -r")
            #expect(pub.hasPrefix(json["fingerprint"] as! String))
        }
    }

    @Test func neverOverwritesWithoutForce() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        #expect(try await KeylineBinary.run(["keys", "new", "k"], in: dir.url).status == 0)
        let before = try dir.read("k.der")
        let again = try await KeylineBinary.run(["keys", "new", "k"], in: dir.url)
        #expect(again.status == 73)
        #expect(again.stderr.contains("already exists"))
        #expect(try dir.read("k.der") == before)
        #expect(try await KeylineBinary.run(["keys", "new", "--force", "k"], in: dir.url).status == 0)
        #expect(try dir.read("k.der") != before)
    }

    @Test func unknownPlatform() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let result = try await KeylineBinary.run(["keys", "new", "--platform", "toaster", "k"], in: dir.url)
        #expect(result.status == 64)
        #expect(result.stderr.contains("unknown platform 'toaster'"))
        #expect(!FileManager.default.fileExists(atPath: dir.path("k.der")))
    }
}

/// Each bad input: a clear, distinct error and a non-zero exit (issue 2, "Done when").
@Suite struct KeysInspectCLI {
    struct Case: CustomStringConvertible, Sendable {
        var name: String
        var make: @Sendable (TemporaryDirectory) async throws -> Void
        var arguments: [String]
        var kind: String
        var phrase: String
        var description: String { name }
    }

    static let badInputs: [Case] = [
        Case(name: "empty file", make: { try $0.write("f", []) }, arguments: [], kind: "empty", phrase: "empty"),
        Case(name: "random bytes", make: { dir in
            var bytes = (0..<256).map { _ in UInt8.random(in: 0...255) }
            bytes[0] = 0x42
            try dir.write("f", bytes)
        }, arguments: [], kind: "notAKey", phrase: "not a key"),
        Case(name: "truncated DER", make: { dir in
            try dir.write("f", Array(try DevicePrivateKey.generate(.rsa).der.prefix(200)))
        }, arguments: [], kind: "truncated", phrase: "truncated"),
        Case(name: "PEM with garbage", make: { dir in
            try dir.write("f", Array("-----BEGIN EC PRIVATE KEY-----\n@@@ not base64 @@@\n-----END EC PRIVATE KEY-----\n".utf8))
        }, arguments: [], kind: "malformedPEM", phrase: "PEM file is malformed"),
        Case(name: "RSA-2048 for a TCP slot", make: { dir in
            try await dir.shell("openssl genrsa -traditional -out f 2048")
        }, arguments: ["--platform", "photon"], kind: "tooLarge", phrase: "RSA-2048 is too large"),
        Case(name: "EC key for a TCP platform", make: { dir in
            try dir.write("f", try DevicePrivateKey.generate(.ec).der)
        }, arguments: ["--platform", "p1"], kind: "wrongAlgorithm", phrase: "p1 devices use RSA-1024"),
        Case(name: "blank slot dump", make: { dir in
            try dir.write("f", [UInt8](repeating: 0xFF, count: 192))
        }, arguments: [], kind: "blankSlot", phrase: "blank"),
        // Issue 12: crafted keys that took 21 s to refuse are refused by size, before any check.
        Case(name: "32 KB crafted RSA key", make: { dir in
            try dir.write("f", HostileKeys.craftedRSA(modulusBytes: 8192, primeBytes: 4096))
        }, arguments: ["--platform", "photon"], kind: "fileTooLarge", phrase: "larger than 8192 bytes"),
        Case(name: "crafted RSA key with a 5600-bit modulus", make: { dir in
            try dir.write("f", HostileKeys.craftedRSA(modulusBytes: 700, primeBytes: 350))
        }, arguments: [], kind: "keyTooLarge", phrase: "5600-bit modulus"),
        Case(name: "PEM with two keys", make: { dir in
            let pems = try [DevicePrivateKey.generate(.ec).pem(), DevicePrivateKey.generate(.ec).pem()]
            try dir.write("f", Array(pems.joined().utf8))
        }, arguments: [], kind: "severalKeysInPEM", phrase: "holds 2 keys"),
        Case(name: "a key followed by more than a slot", make: { dir in
            try dir.write("f", try DevicePrivateKey.generate(.ec).der + [UInt8](repeating: 0xFF, count: 1100))
        }, arguments: [], kind: "tooLongForSlotDump", phrase: "not a slot dump"),
    ]

    @Test(arguments: badInputs)
    func badInput(_ input: Case) async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try await input.make(dir)
        let human = try await KeylineBinary.run(["keys", "inspect", "f"] + input.arguments, in: dir.url)
        #expect(human.status == 65, "\(input.name): \(human.stderr)")
        #expect(human.stderr.contains("f: "), "the error names the file")
        #expect(human.stderr.contains(input.phrase), "\(human.stderr)")
        let json = try await KeylineBinary.run(["keys", "inspect", "f", "--json"] + input.arguments, in: dir.url)
        #expect(json.status == 65)
        let error = try #require(try json.json()["error"] as? [String: Any])
        #expect(error["kind"] as? String == input.kind)
        #expect((error["context"] as? [String: String])?["file"] == "f")
    }

    @Test func badInputsAreDistinct() {
        #expect(Set(Self.badInputs.map(\.kind)).count == Self.badInputs.count)
    }

    /// Issue 12: /dev/urandom was reported as a permission problem (and read without end), a
    /// directory as "NSCocoaErrorDomain error 256"; each error names what the path is.
    @Test func deviceAndDirectoryAreNamed() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        for (path, what) in [("/dev/urandom", "a character device"), (dir.path(""), "a directory")] {
            let result = try await KeylineBinary.run(["keys", "inspect", path, "--json"])
            #expect(result.status == 66)
            let error = try #require(try result.json()["error"] as? [String: Any])
            #expect(error["kind"] as? String == "notARegularFile")
            #expect((error["message"] as? String)?.contains("\(path): \(what), not a regular file") == true, "\(error)")
            let human = try await KeylineBinary.run(["escrow", "show", "-i", path, "x.age"])
            #expect(human.status == 66)
            #expect(human.stderr.contains("\(path): \(what)"), "\(human.stderr)")
        }
    }

    /// Issue 12: a key that does not fit the slot printed the inspection and then an error object;
    /// stdout must be exactly one JSON document, the inspection with its error.
    @Test func notFittingPrintsOneJSONDocument() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try dir.write("k.der", try DevicePrivateKey.generate(.ec).der)
        let result = try await KeylineBinary.run(["keys", "inspect", "k.der", "--platform", "photon", "--json"], in: dir.url)
        #expect(result.status == 65)
        let document = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        #expect(document?["algorithm"] as? String == "ec")
        #expect((document?["error"] as? [String: Any])?["kind"] as? String == "wrongAlgorithm")
        #expect(result.stderr.isEmpty)
    }

    @Test func missingFile() async throws {
        let result = try await KeylineBinary.run(["keys", "inspect", "/nonexistent/key.der"])
        #expect(result.status == 66)
        #expect(result.stderr.contains("/nonexistent/key.der: no such file"))
    }

    @Test func pkcs8FromOpenSSL3IsConvertedAndFits() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try await dir.shell("openssl genrsa -out k.pem 1024")
        let result = try await KeylineBinary.run(["keys", "inspect", "k.pem", "--platform", "photon", "--json"], in: dir.url)
        #expect(result.status == 0, "\(result.stderr)")
        let json = try result.json()
        #expect(json["encoding"] as? String == "PKCS#8")
        #expect((json["deviceDERLength"] as? Int).map { $0 <= 612 } == true)
        let fingerprint = try await dir.shell("openssl rsa -in k.pem -pubout -outform DER | openssl dgst -sha256 -r")
        #expect(fingerprint.hasPrefix(json["fingerprint"] as! String))
    }

    @Test func rawSlotDumpAsKeysSaveWritesIt() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let key = try DevicePrivateKey.generate(.rsa)
        try dir.write("save.der", key.der + [UInt8](repeating: 0xFF, count: 612 - key.der.count))
        let result = try await KeylineBinary.run(["keys", "inspect", "save.der", "--json"], in: dir.url)
        #expect(result.status == 0)
        let json = try result.json()
        #expect(json["container"] as? String == "DCT slot dump")
        #expect(json["fingerprint"] as? String == key.publicKey.fingerprint)
    }
}

@Suite struct ServerBlobCLI {
    @Test func defaultsAreParticlesFiles() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        #expect(try await KeylineBinary.run(["keys", "server-blob", "--platform", "photon", "-o", "tcp.der"], in: dir.url).status == 0)
        #expect(try await KeylineBinary.run(["keys", "server-blob", "--platform", "boron", "-o", "udp.der"], in: dir.url).status == 0)
        // SHA-256 of particle-cli's assets/keys/rsa.pub.der and ec.pub.der.
        #expect(try await dir.shell("sha256sum tcp.der udp.der | cut -c1-64") ==
                "2a1c82fb5f28fe1ba95b4af966aca326eb22398b977fa2540233dbe703fddb16\n8bf15949f650e70f7a575b15585084ac12af597642427a5ca00a427d421affa4\n")
        let address = try await KeylineBinary.run(["keys", "address", "udp.der"], in: dir.url)
        #expect(address.stdout.contains("udp://$id.udp.particle.io:5684"))
    }

    @Test func customHostPortAndKey() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        // A private cloud's server key from openssl, as PEM.
        try await dir.shell("openssl ecparam -name prime256v1 -genkey -noout -out server.pem && openssl ec -in server.pem -pubout -out server.pub.pem")
        let made = try await KeylineBinary.run(["keys", "server-blob", "--platform", "argon", "--key", "server.pub.pem",
                                          "--host", "cloud.example.com", "--port", "5684", "-o", "blob.der", "--json"], in: dir.url)
        #expect(made.status == 0, "\(made.stderr)")
        #expect(try dir.read("blob.der").count == 320)
        let fingerprint = try await dir.shell("openssl ec -in server.pem -pubout -outform DER | openssl dgst -sha256 -r")
        let decoded = try await KeylineBinary.run(["keys", "address", "blob.der", "--json"], in: dir.url).json()
        let first = try #require((decoded["addresses"] as? [[String: Any]])?.first)
        #expect(first["url"] as? String == "udp://cloud.example.com:5684")
        #expect(fingerprint.hasPrefix(first["serverKeyFingerprint"] as! String))
    }

    @Test func refusals() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let long = try await KeylineBinary.run(["keys", "server-blob", "--platform", "boron", "--host", String(repeating: "x", count: 64), "-o", "b.der"], in: dir.url)
        #expect(long.status == 65)
        #expect(long.stderr.contains("at most 63"))
        let rsaForUDP = try await KeylineBinary.run(["keys", "server-blob", "--platform", "boron", "--key", "k.pub.pem", "-o", "b.der"], in: dir.url)
        #expect(rsaForUDP.status == 66)
        try await dir.shell("openssl genrsa -out k.pem 2048 && openssl rsa -in k.pem -pubout -out k.pub.pem")
        let wrong = try await KeylineBinary.run(["keys", "server-blob", "--platform", "boron", "--key", "k.pub.pem", "-o", "b.der"], in: dir.url)
        #expect(wrong.status == 65)
        #expect(wrong.stderr.contains("needs an EC server key"))
        #expect(!FileManager.default.fileExists(atPath: dir.path("b.der")))
    }

    @Test func addressFromAWholeDCTDump() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        #expect(try await KeylineBinary.run(["keys", "server-blob", "--platform", "boron", "--host", "10.1.2.3", "-o", "b.der"], in: dir.url).status == 0)
        var dct = [UInt8](repeating: 0xFF, count: 16384)
        dct.replaceSubrange(3298..<3618, with: try dir.read("b.der"))
        try dir.write("dct.bin", dct)
        let result = try await KeylineBinary.run(["keys", "address", "dct.bin"], in: dir.url)
        #expect(result.status == 0)
        #expect(result.stdout.contains("UDP slot: udp://10.1.2.3:5684"))
        #expect(result.stdout.contains("TCP slot: blank"))
        let boron = try await KeylineBinary.run(["keys", "address", "dct.bin", "--platform", "boron"], in: dir.url)
        #expect(boron.stdout.contains("boron: udp://10.1.2.3:5684"))
    }
}

@Suite struct OutputFiles {
    /// --force replaces a file, never a device node or a directory.
    @Test func forceReplacesOnlyRegularFiles() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try FileManager.default.createSymbolicLink(atPath: dir.path("out.der"), withDestinationPath: "/dev/null")
        let result = try await KeylineBinary.run(["keys", "server-blob", "--platform", "boron", "-o", "out.der", "--force"], in: dir.url)
        #expect(result.status == 73)
        #expect(result.stderr.contains("not a regular file"))
        #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: dir.path("out.der"))) == "/dev/null")
        // The escrow commands publish by rename with --force: same rule.
        #expect(try await KeylineBinary.run(["escrow", "keygen", "-o", "id.txt"], in: dir.url).status == 0)
        let recipient = try await dir.shell("age-keygen -y id.txt").trimmingCharacters(in: .whitespacesAndNewlines)
        try dir.write("plain", Array("hello".utf8))
        let encrypt = try await KeylineBinary.run(["escrow", "encrypt", "-r", recipient, "-o", "out.der", "--force", "plain"], in: dir.url)
        #expect(encrypt.status == 73)
        #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: dir.path("out.der"))) == "/dev/null")
    }
}
