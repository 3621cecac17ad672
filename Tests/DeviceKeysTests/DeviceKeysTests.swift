import DeviceKeys
import Foundation
import Testing

/// Interop with the `openssl` binary, both ways (issue 2, "Done when").
@Suite struct OpenSSLInterop {
    @Test func generatedRSAKeyIsPKCS1ThatOpenSSLReads() async throws {
        let tool = try OpenSSLTool()
        defer { tool.remove() }
        let key = try DevicePrivateKey.generate(.rsa)
        #expect(key.der.count <= 612)
        #expect(key.publicKey.bits == 1024)
        #expect(key.publicKey.rsaPublicExponent == 65537)
        try tool.write("key.der", key.der)
        // `openssl rsa -inform DER` parses PKCS#1 and gives the same public key.
        let spki = try await tool.run("rsa", "-inform", "DER", "-in", "key.der", "-pubout", "-outform", "DER")
        #expect(spki == key.publicKey.spkiDER)
        // And re-encoding it as traditional DER gives back the same bytes: it is PKCS#1, not PKCS#8.
        let traditional = try await tool.run("rsa", "-inform", "DER", "-in", "key.der", "-outform", "DER", "-traditional")
        #expect(traditional == key.der)
        #expect(key.publicKey.fingerprint == (try await sha256Hex(spki, using: tool)))
    }

    @Test func generatedECKeyIsSEC1ThatOpenSSLReads() async throws {
        let tool = try OpenSSLTool()
        defer { tool.remove() }
        let key = try DevicePrivateKey.generate(.ec)
        #expect(key.der.count == 121)
        #expect(key.publicKey.curve == "prime256v1")
        try tool.write("key.der", key.der)
        let spki = try await tool.run("ec", "-inform", "DER", "-in", "key.der", "-pubout", "-outform", "DER")
        #expect(spki == key.publicKey.spkiDER)
        let sec1 = try await tool.run("ec", "-inform", "DER", "-in", "key.der", "-outform", "DER")
        #expect(sec1 == key.der)
        #expect(key.publicKey.fingerprint == (try await sha256Hex(spki, using: tool)))
    }

    @Test func ourPEMFilesAreReadByOpenSSL() async throws {
        let tool = try OpenSSLTool()
        defer { tool.remove() }
        for algorithm in KeyAlgorithm.allCases {
            let key = try DevicePrivateKey.generate(algorithm)
            try tool.write("key.pem", Array(try key.pem().utf8))
            try tool.write("key.pub.pem", Array(key.publicKey.pem.utf8))
            let fromPrivate = try await tool.run("pkey", "-in", "key.pem", "-pubout", "-outform", "DER")
            let fromPublic = try await tool.run("pkey", "-pubin", "-in", "key.pub.pem", "-outform", "DER")
            #expect(fromPrivate == key.publicKey.spkiDER)
            #expect(fromPublic == key.publicKey.spkiDER)
        }
    }

    @Test func traditionalRSAFromOpenSSL() async throws {
        let tool = try OpenSSLTool()
        defer { tool.remove() }
        try await tool.run("genrsa", "-traditional", "-out", "k.pem", "1024")
        let expected = try await tool.run("rsa", "-in", "k.pem", "-pubout", "-outform", "DER")
        let parsed = try KeyFile.parse(try tool.read("k.pem"))
        #expect(parsed.container == .pem)
        #expect(parsed.encoding == .pkcs1)
        #expect(parsed.publicKey.spkiDER == expected)
        #expect(parsed.publicKey.fingerprint == (try await sha256Hex(expected, using: tool)))
        // The DER form too.
        try await tool.run("rsa", "-in", "k.pem", "-outform", "DER", "-traditional", "-out", "k.der")
        let der = try tool.read("k.der")
        let key = try DevicePrivateKey(der: der)
        #expect(key.der == der)
        #expect(key.publicKey.spkiDER == expected)
    }

    @Test func pkcs8RSAFromOpenSSL3IsConvertedToPKCS1() async throws {
        let tool = try OpenSSLTool()
        defer { tool.remove() }
        try await tool.run("genrsa", "-out", "k.pem", "1024")
        let pem = try tool.read("k.pem")
        #expect(String(decoding: pem, as: UTF8.self).contains("BEGIN PRIVATE KEY"))
        let expected = try await tool.run("rsa", "-in", "k.pem", "-pubout", "-outform", "DER")
        let parsed = try KeyFile.parse(pem)
        #expect(parsed.encoding == .pkcs8)
        let converted = try #require(parsed.privateKey)
        #expect(converted.der.count <= 612)
        #expect(converted.publicKey.spkiDER == expected)
        // The conversion is exactly OpenSSL's own PKCS#1 of the same key.
        let traditional = try await tool.run("rsa", "-in", "k.pem", "-outform", "DER", "-traditional")
        #expect(converted.der == traditional)
        // PKCS#8 DER (634 bytes for RSA-1024, the size that a device truncates) converts the same way.
        let pkcs8DER = try await tool.run("pkcs8", "-topk8", "-nocrypt", "-in", "k.pem", "-outform", "DER")
        #expect(pkcs8DER.count > 612)
        let fromDER = try DevicePrivateKey(der: pkcs8DER)
        #expect(fromDER.der == traditional)
    }

    @Test func ecKeyFromOpenSSLWithParametersBlock() async throws {
        let tool = try OpenSSLTool()
        defer { tool.remove() }
        // `particle keys new` on a UDP device runs exactly this (particle-cli-keys.md §1).
        try await tool.run("ecparam", "-name", "prime256v1", "-genkey", "-out", "k.pem")
        let pem = try tool.read("k.pem")
        #expect(String(decoding: pem, as: UTF8.self).contains("BEGIN EC PARAMETERS"))
        let expected = try await tool.run("ec", "-in", "k.pem", "-pubout", "-outform", "DER")
        let parsed = try KeyFile.parse(pem)
        #expect(parsed.encoding == .sec1)
        #expect(parsed.publicKey.spkiDER == expected)
        #expect(parsed.publicKey.fingerprint == (try await sha256Hex(expected, using: tool)))
        #expect(parsed.privateKey?.der.count == 121)
    }

    @Test func publicKeysInEveryFormKeysSendAccepts() async throws {
        let tool = try OpenSSLTool()
        defer { tool.remove() }
        try await tool.run("genrsa", "-out", "r.pem", "1024")
        try await tool.run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "e.pem")
        for (name, tool_) in [("r", "rsa"), ("e", "ec")] {
            let spki = try await tool.run(tool_, "-in", "\(name).pem", "-pubout", "-outform", "DER")
            let pubPEM = try await tool.run(tool_, "-in", "\(name).pem", "-pubout")
            for input in [spki, pubPEM] {
                let parsed = try KeyFile.parse(input)
                #expect(parsed.privateKey == nil)
                #expect(parsed.encoding == .spki)
                #expect(parsed.publicKey.spkiDER == spki)
            }
            #expect(try DevicePublicKey(spkiDER: spki).spkiDER == spki)
        }
        // BEGIN RSA PUBLIC KEY (PKCS#1 RSAPublicKey).
        let rsaPublic = try await tool.run("rsa", "-in", "r.pem", "-RSAPublicKey_out")
        let expected = try await tool.run("rsa", "-in", "r.pem", "-pubout", "-outform", "DER")
        let parsed = try KeyFile.parse(rsaPublic)
        #expect(parsed.encoding == .pkcs1Public)
        #expect(parsed.publicKey.spkiDER == expected)
    }
}

/// Raw DCT slot dumps, as `particle keys save` and a DFU upload produce them.
@Suite struct SlotDumps {
    @Test func rsaSlotWithFFPadding() throws {
        let key = try DevicePrivateKey.generate(.rsa)
        let slot = key.der + [UInt8](repeating: 0xFF, count: 612 - key.der.count)
        let read = try DevicePrivateKey(slot: slot)
        #expect(read.der == key.der)
        #expect(read.publicKey == key.publicKey)
        // The whole-file reader treats it as a slot dump too.
        let file = try KeyFile.parse(slot)
        #expect(file.container == .slotDump)
        #expect(file.publicKey == key.publicKey)
    }

    @Test func ecSlotWithLeftoverBytes() throws {
        // mbedtls writes the DER at the end of its buffer and Device OS memmoves it to the front,
        // leaving a copy of the DER's tail behind it (device-os-keys.md §1.3).
        let key = try DevicePrivateKey.generate(.ec)
        let leftovers = Array(key.der.suffix(192 - key.der.count))
        let slot = key.der + leftovers
        #expect(slot.count == 192)
        #expect(try DevicePrivateKey(slot: slot).publicKey == key.publicKey)
    }

    @Test func blankSlot() {
        #expect(throws: DeviceKeyError.blankSlot(slotSize: 192)) {
            try DevicePrivateKey(slot: [UInt8](repeating: 0xFF, count: 192))
        }
        #expect(throws: DeviceKeyError.blankSlot(slotSize: 612)) {
            try KeyFile.parse([UInt8](repeating: 0xFF, count: 612))
        }
    }

    @Test func corruptSlotIsNotBlank() throws {
        // Garbage that is not 0xFF-first: the device keeps it (only byte 0 is checked).
        var garbage = [UInt8](repeating: 0xA5, count: 192)
        garbage[0] = 0x00
        #expect {
            try DevicePrivateKey(slot: garbage)
        } throws: { error in
            guard case .corruptSlot(192, _) = error as? DeviceKeyError else { return false }
            return true
        }
        // A key with bits flipped inside its DER: header intact, content wrong.
        let key = try DevicePrivateKey.generate(.ec)
        var damaged = key.der + [UInt8](repeating: 0xFF, count: 192 - key.der.count)
        for i in 7..<39 { damaged[i] ^= 0xFF }
        #expect {
            try DevicePrivateKey(slot: damaged)
        } throws: { error in
            guard case .corruptSlot = error as? DeviceKeyError else { return false }
            return true
        }
    }

    @Test func truncatedPKCS8InRSASlot() async throws {
        let tool = try OpenSSLTool()
        defer { tool.remove() }
        try await tool.run("genrsa", "-out", "k.pem", "1024")
        let pkcs8 = try await tool.run("pkcs8", "-topk8", "-nocrypt", "-in", "k.pem", "-outform", "DER")
        // What a device holds after `particle keys load` of an OpenSSL 3 .der file.
        let slot = Array(pkcs8.prefix(612))
        #expect(throws: DeviceKeyError.truncatedPKCS8InSlot(keyLength: pkcs8.count, slotSize: 612)) {
            try DevicePrivateKey(slot: slot)
        }
    }
}

/// Every bad input gets its own error (issue 2, "Done when").
@Suite struct BadInput {
    @Test func empty() {
        #expect(throws: DeviceKeyError.empty) { try KeyFile.parse([]) }
        #expect(throws: DeviceKeyError.empty) { try DevicePrivateKey(der: []) }
    }

    @Test func randomBytes() {
        var generator = SystemRandomNumberGenerator()
        var bytes = (0..<300).map { _ in UInt8.random(in: 0...255, using: &generator) }
        bytes[0] = 0x17  // not a SEQUENCE, not '-', not 0xFF
        #expect(throws: DeviceKeyError.notAKey) { try KeyFile.parse(bytes) }
        #expect(throws: DeviceKeyError.notAKey) { try KeyFile.parse(Array("hello, this is not a key\n".utf8)) }
    }

    @Test func truncatedDER() throws {
        let key = try DevicePrivateKey.generate(.rsa)
        let cut = Array(key.der.prefix(300))
        #expect(throws: DeviceKeyError.truncated(encoding: .pkcs1, expected: key.der.count, actual: 300)) {
            try KeyFile.parse(cut)
        }
        #expect(throws: DeviceKeyError.truncated(encoding: .pkcs1, expected: key.der.count, actual: 300)) {
            try DevicePrivateKey(der: cut)
        }
    }

    @Test func pemWithGarbage() throws {
        let key = try DevicePrivateKey.generate(.ec)
        var pem = try key.pem()
        // Break the base64 body.
        let bodyStart = try #require(pem.range(of: "\n"))
        pem.replaceSubrange(bodyStart.upperBound..<pem.index(bodyStart.upperBound, offsetBy: 10), with: "!!garbage!")
        let broken = Array(pem.utf8)
        #expect {
            try KeyFile.parse(broken)
        } throws: { error in
            guard case .malformedPEM = error as? DeviceKeyError else { return false }
            return true
        }
        // Armor around something that is not a key.
        let notKey = "-----BEGIN PRIVATE KEY-----\naGVsbG8gd29ybGQ=\n-----END PRIVATE KEY-----\n"
        #expect(throws: DeviceKeyError.notAKey) { try KeyFile.parse(Array(notKey.utf8)) }
        let certificateOnly = "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n"
        #expect(throws: DeviceKeyError.noKeyInPEM(labels: ["CERTIFICATE"])) { try KeyFile.parse(Array(certificateOnly.utf8)) }
    }

    @Test func encryptedPEM() async throws {
        let tool = try OpenSSLTool()
        defer { tool.remove() }
        try await tool.run("genrsa", "-aes128", "-passout", "pass:secret", "-out", "k.pem", "1024")
        #expect(throws: DeviceKeyError.encryptedPEM) { try KeyFile.parse(try tool.read("k.pem")) }
        try await tool.run("genrsa", "-traditional", "-aes128", "-passout", "pass:secret", "-out", "t.pem", "1024")
        #expect(throws: DeviceKeyError.encryptedPEM) { try KeyFile.parse(try tool.read("t.pem")) }
    }

    @Test func algorithmsNoDeviceUses() async throws {
        let tool = try OpenSSLTool()
        defer { tool.remove() }
        try await tool.run("genpkey", "-algorithm", "ed25519", "-out", "ed.pem")
        #expect(throws: DeviceKeyError.unsupportedAlgorithm("ED25519")) { try KeyFile.parse(try tool.read("ed.pem")) }
        try await tool.run("ecparam", "-name", "secp384r1", "-genkey", "-noout", "-out", "p384.pem")
        #expect(throws: DeviceKeyError.unsupportedCurve("secp384r1")) { try KeyFile.parse(try tool.read("p384.pem")) }
    }

    @Test func publicKeyWhereAPrivateKeyIsNeeded() throws {
        let key = try DevicePrivateKey.generate(.ec)
        #expect(throws: DeviceKeyError.notAPrivateKey) { try DevicePrivateKey(der: key.publicKey.spkiDER) }
    }

    @Test func trailingBytesAfterAKeyFile() throws {
        let key = try DevicePrivateKey.generate(.ec)
        #expect(throws: DeviceKeyError.trailingBytes(keyLength: 121, fileLength: 125)) {
            try DevicePrivateKey(der: key.der + [1, 2, 3, 4])
        }
    }
}

@Suite struct Secrets {
    /// A key that reaches a log line or an error shows its fingerprint, never its bytes.
    @Test func descriptionsDoNotRevealKeyBytes() throws {
        for algorithm in KeyAlgorithm.allCases {
            let key = try DevicePrivateKey.generate(algorithm)
            let hex = key.der.map { String(format: "%02x", $0) }.joined()
            let base64 = Data(key.der).base64EncodedString()
            var dumped = ""
            dump(key, to: &dumped)
            for text in [String(describing: key), String(reflecting: key), "\(key)", dumped] {
                #expect(text.contains(key.publicKey.fingerprint))
                #expect(!text.contains(hex.prefix(40)))
                #expect(!text.contains(base64.prefix(40)))
                #expect(!text.contains("\(key.der.prefix(12).map { $0 })".dropFirst().dropLast()))
            }
        }
    }
}

@Suite struct DamagedKeys {
    /// A SEC1 key with its private scalar damaged still decodes in OpenSSL, carrying the old public
    /// point; escrowing it would record a public key the device does not have.
    @Test func ecPrivateScalarDamaged() throws {
        let key = try DevicePrivateKey.generate(.ec)
        var damaged = key.der
        damaged[20] ^= 0x01  // inside the 32-byte private scalar at offset 7
        #expect(throws: DeviceKeyError.inconsistentKeyPair(algorithm: .ec)) { try DevicePrivateKey(der: damaged) }
    }

    @Test func rsaPrimeDamaged() throws {
        let key = try DevicePrivateKey.generate(.rsa)
        var damaged = key.der
        // Inside the modulus (its 128 content bytes start at 11): still valid DER, but n ≠ p·q.
        damaged[50] ^= 0x01
        #expect(throws: DeviceKeyError.inconsistentKeyPair(algorithm: .rsa)) { try DevicePrivateKey(der: damaged) }
    }
}
