import DeviceKeys
import Foundation
import Testing
import TestSupport
@testable import Escrow
@testable import Age

@Suite struct EscrowBackupTests {
    static func backup(_ algorithm: KeyAlgorithm, key: DevicePrivateKey? = nil) throws -> EscrowBackup {
        try EscrowBackup(deviceID: "E00FCE68A1B2C3D4E5F60718", platform: algorithm == .rsa ? "photon" : "boron",
                         product: "12345", privateKey: key ?? DevicePrivateKey.generate(algorithm),
                         job: "job-2026-11-21-a", station: "line-1 station 3",
                         createdAt: Date(timeIntervalSince1970: 1_795_000_000.75))
    }

    /// The document as a mutable dictionary, to build broken variants.
    static func document(_ backup: EscrowBackup) throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: Data(backup.encoded())) as? [String: Any])
    }

    static func json(_ document: [String: Any]) throws -> [UInt8] {
        Array(try JSONSerialization.data(withJSONObject: document, options: [.sortedKeys]))
    }

    @Test(arguments: KeyAlgorithm.allCases)
    func documentRoundTrips(algorithm: KeyAlgorithm) throws {
        let original = try Self.backup(algorithm)
        let decoded = try EscrowBackup.decode(original.encoded())
        #expect(decoded.deviceID == "e00fce68a1b2c3d4e5f60718")
        #expect(decoded.privateKey.der == original.privateKey.der)
        #expect(decoded.publicKeySHA256 == original.publicKeySHA256)
        #expect(decoded.metadata == original.metadata)
        #expect(decoded.createdAt == Date(timeIntervalSince1970: 1_795_000_000))
        #expect(decoded.metadata["created_at"] == "2026-11-18T11:06:40Z")
        #expect(Set(try Self.document(original).keys) == EscrowBackup.fields)
        #expect(decoded.objectKey.path == "12345/e00fce68a1b2c3d4e5f60718/\(original.publicKeySHA256).age")
    }

    @Test(arguments: KeyAlgorithm.allCases)
    func encryptedBackupRoundTrips(algorithm: KeyAlgorithm) throws {
        let identity = X25519Identity.generate(), officer = X25519Identity.generate()
        let original = try Self.backup(algorithm)
        let file = try original.encrypt(to: [identity.recipient, officer.recipient])
        for holder in [identity, officer] {
            let restored = try EscrowBackup.decrypt(file, identities: [holder])
            #expect(restored.privateKey.der == original.privateKey.der)
            #expect(restored.metadata == original.metadata)
        }
        #expect(throws: AgeError.noIdentityMatched(stanzaTypes: ["X25519", "X25519"])) {
            try EscrowBackup.decrypt(file, identities: [X25519Identity.generate()])
        }
    }

    @Test func rsaPayloadHoldsTheSlotSizedKey() throws {
        let backup = try Self.backup(.rsa)
        #expect((600...612).contains(backup.privateKey.der.count))
    }

    @Test func descriptionsNeverShowTheKey() throws {
        let backup = try Self.backup(.ec)
        let base64 = Data(backup.privateKey.der).base64EncodedString()
        let hex = backup.privateKey.der.map { String(format: "%02x", $0) }.joined()
        for text in [backup.description, String(reflecting: backup), "\(backup)", "\(backup.metadata)",
                     String(describing: Mirror(reflecting: backup).children.map(\.value))] {
            #expect(!text.contains(base64.prefix(24)) && !text.contains(hex.prefix(24)))
        }
    }

    /// The document's fingerprint and device ID follow the store key's rules (one definition):
    /// ASCII lowercase hex only. Fullwidth digits count as hex for `Character.isHexDigit`.
    @Test func documentFieldsUseTheObjectKeyRules() throws {
        let backup = try Self.backup(.ec)
        let fullwidth = String(backup.publicKeySHA256.unicodeScalars.map { scalar in
            Character(UnicodeScalar(scalar.value - 0x21 + 0xFF01)!)
        })
        var document = try Self.document(backup)
        document["public_key_sha256"] = fullwidth
        #expect(throws: EscrowBackupError.invalidField("public_key_sha256", reason: "must be 64 lowercase hex digits")) {
            try EscrowBackup.decode(try Self.json(document))
        }
        for id in ["e00fce68a1b2c3d4e5f60718", "e00fce68a1b2c3d4e5f6071", "e00fce68a1b2c3d4e5f6071g", "E00FCE68A1B2C3D4E5F60718",
                   "e00fce68a1b2c3d4e5f6071\u{FF18}", "e00fce68a1b2c3d4e5f607180"] {
            let keyAccepts = (try? EscrowObjectKey(product: "p", deviceID: id, publicKeySHA256: backup.publicKeySHA256)) != nil
            let backupAccepts = (try? EscrowBackup.checkDeviceID(id)) != nil
            #expect(keyAccepts == backupAccepts, "\(id)")
        }
    }

    @Test func decodingChecksEveryField() throws {
        let backup = try Self.backup(.ec)
        let other = try DevicePrivateKey.generate(.ec)
        let rsa = try DevicePrivateKey.generate(.rsa)
        let good = try Self.document(backup)
        let cases: [(String, (inout [String: Any]) -> Void, EscrowBackupError)] = [
            ("format", { $0["format"] = "other" }, .invalidField("format", reason: "must be \"keyline-escrow-backup\"")),
            ("version", { $0["version"] = 2 }, .unsupportedVersion(2)),
            ("version type", { $0["version"] = "1" }, .invalidField("version", reason: "must be an integer")),
            ("unknown", { $0["note"] = "x" }, .unknownField("note")),
            ("algorithm", { $0["algorithm"] = "dsa" }, .invalidField("algorithm", reason: "must be \"rsa\" or \"ec\"")),
            ("algorithm mismatch", { $0["algorithm"] = "rsa" }, .algorithmMismatch(recorded: .rsa, actual: .ec)),
            ("fingerprint", { $0["public_key_sha256"] = other.publicKey.fingerprint },
             .fingerprintMismatch(recorded: other.publicKey.fingerprint, actual: backup.publicKeySHA256)),
            ("fingerprint form", { $0["public_key_sha256"] = backup.publicKeySHA256.uppercased() },
             .invalidField("public_key_sha256", reason: "must be 64 lowercase hex digits")),
            ("other key", { $0["private_key_der"] = Data(other.der).base64EncodedString() },
             .fingerprintMismatch(recorded: backup.publicKeySHA256, actual: other.publicKey.fingerprint)),
            ("rsa key", { $0["private_key_der"] = Data(rsa.der).base64EncodedString() }, .algorithmMismatch(recorded: .ec, actual: .rsa)),
            ("base64", { $0["private_key_der"] = "not base64!" }, .invalidField("private_key_der", reason: "must be base64")),
            ("device id", { $0["device_id"] = "e00fce68" }, .invalidField("device_id", reason: "must be 24 lowercase hex digits")),
            ("device id case", { $0["device_id"] = "E00FCE68A1B2C3D4E5F60718" }, .invalidField("device_id", reason: "must be 24 lowercase hex digits")),
            ("platform", { $0["platform"] = "Boron!" }, .invalidField("platform", reason: "must be a platform name like \"boron\" (lowercase letters, digits, - or _)")),
            ("product", { $0["product"] = "../etc" }, .invalidField("product", reason: "must be 1-64 letters, digits, '.', '-' or '_', not starting with '.'")),
            ("job", { $0["job"] = "" }, .invalidField("job", reason: "must be 1-200 characters without control characters or surrounding spaces")),
            ("station", { $0["station"] = "a\nb" }, .invalidField("station", reason: "must be 1-200 characters without control characters or surrounding spaces")),
            ("created", { $0["created_at"] = "yesterday" }, .invalidField("created_at", reason: "must be an RFC 3339 UTC time like 2026-11-21T10:30:00Z")),
            ("missing job", { $0["job"] = nil }, .missingField("job")),
            ("string type", { $0["station"] = 3 }, .invalidField("station", reason: "must be a string")),
        ]
        for (name, mutate, expected) in cases {
            var document = good
            mutate(&document)
            #expect(throws: expected, "\(name)") { try EscrowBackup.decode(try Self.json(document)) }
        }
        #expect(throws: EscrowBackupError.malformedDocument("not a JSON object")) { try EscrowBackup.decode(Array("[1]".utf8)) }
        // A damaged key (one byte of the private scalar changed) is refused, not restored.
        var damaged = backup.privateKey.der
        damaged[10] ^= 0x01
        var document = good
        document["private_key_der"] = Data(damaged).base64EncodedString()
        #expect(throws: EscrowBackupError.self) { try EscrowBackup.decode(try Self.json(document)) }
    }

    @Test func restoreChecksTheRegistration() throws {
        let backup = try Self.backup(.ec)
        try backup.check(deviceID: "E00FCE68A1B2C3D4E5F60718", publicKeySHA256: backup.publicKeySHA256.uppercased())
        #expect(throws: EscrowBackupError.registrationMismatch(field: "device_id", registered: "e00fce68a1b2c3d4e5f60719", backup: backup.deviceID)) {
            try backup.check(deviceID: "e00fce68a1b2c3d4e5f60719", publicKeySHA256: backup.publicKeySHA256)
        }
        let other = String(repeating: "0", count: 64)
        #expect(throws: EscrowBackupError.registrationMismatch(field: "public_key_sha256", registered: other, backup: backup.publicKeySHA256)) {
            try backup.check(deviceID: backup.deviceID, publicKeySHA256: other)
        }
    }

    @Test func everySingleByteFlipOfABackupIsAnError() throws {
        let identity = X25519Identity.generate()
        let file = try Self.backup(.rsa).encrypt(to: [identity.recipient])
        for index in file.indices {
            var damaged = file
            damaged[index] ^= 0x04
            #expect(throws: AgeError.self, "byte \(index)") { try EscrowBackup.decrypt(damaged, identities: [identity]) }
        }
    }

    @Test func ageDecryptsABackupToTheDocument() async throws {
        let age = try ExternalTool("age")
        let scratch = try ScratchDirectory(label: "escrow")
        let identity = X25519Identity.generate()
        try identity.identityFile().write(to: scratch.file("identity.txt"), atomically: true, encoding: .utf8)
        let original = try Self.backup(.rsa)
        let result = try await age.run(["-d", "-i", scratch.file("identity.txt").path], stdin: try original.encrypt(to: [identity.recipient]))
        #expect(result.status == 0, "age -d failed: \(result.stderr)")
        let decoded = try EscrowBackup.decode(result.stdoutBytes)
        #expect(decoded.privateKey.der == original.privateKey.der)
    }
}

/// Issue 12: `escrow show` accepted documents `escrow backup` refuses. Decoding ends in the same
/// validation as writing, so each of these is refused both ways.
@Suite struct OneBackupValidation {
    static func fieldError(_ error: any Error) -> String? {
        if case EscrowBackupError.invalidField(let field, _) = error { return field }
        if case EscrowBackupError.malformedDocument(let reason) = error { return "document: \(reason)" }
        return nil
    }

    @Test func documentsWritingWouldRefuseAreRefusedWhenRead() throws {
        let ec = try EscrowBackupTests.backup(.ec)  // a boron backup
        let rsa = try DevicePrivateKey.generate(.rsa)
        let good = try EscrowBackupTests.document(ec)
        let cases: [(String, (inout [String: Any]) -> Void, String)] = [
            ("unknown platform", { $0["platform"] = "toaster" }, "platform"),
            ("EC key labelled photon", { $0["platform"] = "photon" }, "private_key_der"),
            ("a P2 device ID labelled boron", { $0["device_id"] = "0a10aced2021aabbccddeeff" }, "device_id"),
            ("an RSA key labelled boron", { document in
                document["algorithm"] = "rsa"
                document["private_key_der"] = Data(rsa.der).base64EncodedString()
                document["public_key_sha256"] = rsa.publicKey.fingerprint
            }, "private_key_der"),
        ]
        for (name, mutate, field) in cases {
            var document = good
            mutate(&document)
            #expect("\(name)", performing: { try EscrowBackup.decode(try EscrowBackupTests.json(document)) },
                    throws: { Self.fieldError($0) == field })
        }
        // The same combinations are refused when a backup is made.
        #expect(throws: EscrowBackupError.self) {
            try EscrowBackup(deviceID: ec.deviceID, platform: "photon", product: "p", privateKey: ec.privateKey, job: "j", station: "s")
        }
        #expect(throws: EscrowBackupError.self) {
            try EscrowBackup(deviceID: "0a10aced2021aabbccddeeff", platform: "boron", product: "p", privateKey: ec.privateKey, job: "j", station: "s")
        }
        #expect(throws: EscrowBackupError.self) {
            try EscrowBackup(deviceID: ec.deviceID, platform: "toaster", product: "p", privateKey: ec.privateKey, job: "j", station: "s")
        }
    }

    /// JSONSerialization keeps the last of two equal keys; a document that says two things is refused.
    @Test func duplicateKeysAreRefused() throws {
        let text = String(decoding: try EscrowBackupTests.backup(.ec).encoded(), as: UTF8.self)
        let twice = text.replacingOccurrences(of: "\"platform\":\"boron\"", with: "\"platform\":\"boron\",\"platform\":\"xenon\"")
        #expect(twice != text)
        #expect(throws: EscrowBackupError.malformedDocument("the field \"platform\" appears more than once")) {
            try EscrowBackup.decode(Array(twice.utf8))
        }
        // Also when spelled with an escape.
        let escaped = text.replacingOccurrences(of: "\"station\":", with: "\"st\\u0061tion\":\"x\",\"station\":")
        #expect(throws: EscrowBackupError.malformedDocument("the field \"station\" appears more than once")) {
            try EscrowBackup.decode(Array(escaped.utf8))
        }
        // Equal keys in different objects, or a key's text as a value, are no duplicates.
        #expect(StrictJSON.duplicateKey(in: Array(#"{"a":{"a":1},"b":"a","c":["a","a"]}"#.utf8)) == nil)
    }

    @Test func oversizedDocumentIsRefusedBeforeParsing() throws {
        var document = try EscrowBackupTests.document(try EscrowBackupTests.backup(.ec))
        document["station"] = String(repeating: "x", count: EscrowBackup.maximumDocumentSize)
        #expect(performing: { try EscrowBackup.decode(try EscrowBackupTests.json(document)) },
                throws: { Self.fieldError($0)?.hasPrefix("document: ") == true })
    }
}

@Suite("The backup document is written without Foundation")
struct EscrowBackupDocumentTests {
    @Test("the same bytes JSONSerialization writes with sorted keys, for awkward labels too", arguments: KeyAlgorithm.allCases)
    func sameBytesAsFoundation(algorithm: KeyAlgorithm) throws {
        for station in ["line-1 station 3", "quote \" slash / backslash \\ ünï 中"] {
            let backup = try EscrowBackup(deviceID: "E00FCE68A1B2C3D4E5F60718", platform: algorithm == .rsa ? "photon" : "boron",
                                          product: "12345", privateKey: DevicePrivateKey.generate(algorithm),
                                          job: "job/2026", station: station, createdAt: Date(timeIntervalSince1970: 1_795_000_000))
            var document: [String: Any] = backup.metadata
            document["version"] = EscrowBackup.version
            document["private_key_der"] = Data(backup.privateKey.der).base64EncodedString()
            let foundation = Array(try JSONSerialization.data(withJSONObject: document, options: [.sortedKeys, .withoutEscapingSlashes]))
            #expect(String(decoding: backup.encoded(), as: UTF8.self) == String(decoding: foundation, as: UTF8.self))
            #expect(try EscrowBackup.decode(backup.encoded()).metadata == backup.metadata)
        }
    }

    @Test("base64 of every length remainder matches Foundation's")
    func base64Remainders() {
        for length in 0..<7 {
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 250) }
            var out = [UInt8](repeating: 0, count: EscrowBackupDocument.base64Length(length))
            bytes.withUnsafeBytes { source in out.withUnsafeMutableBufferPointer { EscrowBackupDocument.base64(source, into: $0) } }
            #expect(String(decoding: out, as: UTF8.self) == Data(bytes).base64EncodedString())
        }
    }
}
