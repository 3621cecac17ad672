import Foundation
import Testing
@testable import Age

@Suite struct AgeTests {
    static let vectorIdentity = "AGE-SECRET-KEY-1EGTZVFFV20835NWYV6270LXYVK2VKNX2MMDKWYKLMGR48UAWX40Q2P2LM0"

    @Test func bech32RoundTripsAndRejectsDamage() throws {
        let identity = try X25519Identity(Self.vectorIdentity)
        #expect(identity.secretKeyString() == Self.vectorIdentity)
        let recipient = identity.recipient.description
        #expect(recipient.hasPrefix("age1") && recipient.count == 62)
        #expect(try X25519Recipient(recipient) == identity.recipient)
        // As `age` does: recipients only in lowercase, identities only in uppercase.
        #expect(throws: AgeError.self) { try X25519Recipient(recipient.uppercased()) }
        #expect(throws: AgeError.self) { try X25519Identity(Self.vectorIdentity.lowercased()) }
        // Mixed case, a changed character and a wrong prefix are all refused.
        #expect(throws: AgeError.self) { try X25519Recipient("A" + recipient.dropFirst()) }
        var damaged = Array(recipient)
        damaged[10] = damaged[10] == "q" ? "p" : "q"
        #expect(throws: AgeError.self) { try X25519Recipient(String(damaged)) }
        #expect(throws: AgeError.self) { try X25519Recipient(Self.vectorIdentity) }
        #expect(throws: AgeError.self) { try X25519Identity(recipient) }
    }

    /// An identity where a recipient belongs is named as such and never quoted; other recipient
    /// text is quoted only as its first 12 characters.
    @Test func secretKeyGivenAsRecipientIsNeverEchoed() throws {
        let secretPart = String(Self.vectorIdentity.dropFirst("AGE-SECRET-KEY-1".count))
        for text in [Self.vectorIdentity, Self.vectorIdentity.lowercased(), "  \(Self.vectorIdentity)  ", "x" + Self.vectorIdentity] {
            #expect(throws: AgeError.identityAsRecipient(line: nil)) { try X25519Recipient(text) }
        }
        let identityFile = "# created: 2026-11-21T10:00:00Z\n# public key: age1xyz\n\(Self.vectorIdentity)\n"
        #expect(throws: AgeError.identityAsRecipient(line: 3)) { try X25519Recipient.parseFile(identityFile) }
        do {
            _ = try X25519Recipient.parseFile(identityFile)
        } catch {
            #expect(!"\(error)".uppercased().contains(secretPart.prefix(8)))
            #expect(!String(reflecting: error).uppercased().contains(secretPart.prefix(8)))
            #expect("\(error)".contains("line 3: this is an age identity (secret key), not a recipient"))
        }
        #expect(throws: AgeError.invalidRecipient("age1notareci…", reason: "not valid Bech32 (badChecksum)")) {
            try X25519Recipient("age1notarecipient0123456789")
        }
    }

    @Test func identityTextNeverAppearsInDescriptionsOrErrors() throws {
        let identity = try X25519Identity(Self.vectorIdentity)
        for text in [identity.description, String(reflecting: identity), "\(identity)", String(describing: Mirror(reflecting: identity).children.map(\.value))] {
            #expect(!text.uppercased().contains(Self.vectorIdentity.dropFirst(15).prefix(20)))
        }
        var damaged = Self.vectorIdentity
        damaged.removeLast()
        damaged += "Q"
        do {
            _ = try X25519Identity.parseFile("# comment\n\(damaged)\n")
            Issue.record("a damaged identity loaded")
        } catch {
            #expect(error == .invalidIdentity(line: 2, reason: "not valid Bech32 (badChecksum)"))
            #expect(!error.description.contains(damaged.dropFirst(15).prefix(20)))
        }
    }

    @Test(arguments: [0, 1, 612, 65_535, 65_536, 65_537, 131_072, 200_000], [false, true])
    func roundTrip(size: Int, armor: Bool) throws {
        let identities = (0..<3).map { _ in X25519Identity.generate() }
        let plaintext = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        let file = try Age.encrypt(plaintext, to: identities.map(\.recipient), armor: armor)
        #expect(AgeArmor.isArmored(file) == armor)
        for identity in identities {
            #expect(try Age.decrypt(file, identities: [identity]) == plaintext)
        }
        let binary = armor ? try AgeArmor.decode(file) : file
        let header = try AgeHeader.parse(binary)
        #expect(header.stanzas.map(\.type) == ["X25519", "X25519", "X25519"])
        let chunks = max(1, (size + AgeStream.chunkSize - 1) / AgeStream.chunkSize)
        #expect(binary.count == header.payloadOffset + 16 + size + chunks * 16)
    }

    @Test func lowOrderRecipientIsRefused() throws {
        // The all-zero point: X25519 with it yields an all-zero secret.
        let zero = try X25519Recipient(Bech32.encode(hrp: "age", data: [UInt8](repeating: 0, count: 32)))
        #expect(throws: AgeError.self) { try Age.encrypt([1], to: [zero]) }
    }

    @Test func wrongIdentityIsNoMatch() throws {
        let file = try Age.encrypt(Array("secret".utf8), to: [X25519Identity.generate().recipient])
        #expect(throws: AgeError.noIdentityMatched(stanzaTypes: ["X25519"])) {
            try Age.decrypt(file, identities: [X25519Identity.generate(), X25519Identity.generate()])
        }
    }

    /// Any single changed byte anywhere in a binary file is an authentication or format error;
    /// no flip ever yields plaintext.
    @Test func everySingleByteFlipIsRejected() throws {
        let identity = X25519Identity.generate()
        let plaintext = Array(repeating: UInt8(ascii: "k"), count: 612)
        let file = try Age.encrypt(plaintext, to: [identity.recipient, X25519Identity.generate().recipient])
        var classes: [AgeError.Category: Int] = [:]
        for index in file.indices {
            for mask: UInt8 in [0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xff] {
                var damaged = file
                damaged[index] ^= mask
                do {
                    _ = try Age.decrypt(damaged, identities: [identity])
                    Issue.record("flipping byte \(index) with \(mask) still decrypted")
                } catch let error as AgeError {
                    classes[error.category, default: 0] += 1
                }
            }
        }
        #expect(classes[.payload, default: 0] > 0 && classes[.header, default: 0] > 0 && classes[.headerMAC, default: 0] > 0)
        #expect(classes[.usage] == nil)
    }

    /// In armor, a flip is either refused or (only for whitespace around the block) harmless.
    @Test func armoredFlipsNeverYieldOtherPlaintext() throws {
        let identity = X25519Identity.generate()
        let plaintext = Array("a small secret".utf8)
        let file = try Age.encrypt(plaintext, to: [identity.recipient], armor: true)
        for index in file.indices {
            for mask: UInt8 in [0x01, 0x07, 0x20, 0x80] {
                var damaged = file
                damaged[index] ^= mask
                if let output = try? Age.decrypt(damaged, identities: [identity]) {
                    #expect(output == plaintext)
                    #expect(index == file.count - 1, "byte \(index) flipped with \(mask) still decrypted")
                }
            }
        }
    }

    /// Cutting a file short: inside the header or nonce, or at a chunk boundary, is reported as
    /// truncation; inside the final chunk it cannot be told from damage and fails authentication.
    @Test func truncationIsReported() throws {
        let identity = X25519Identity.generate()
        let plaintext = (0..<(AgeStream.chunkSize + 100)).map { UInt8(truncatingIfNeeded: $0) }
        let file = try Age.encrypt(plaintext, to: [identity.recipient])
        let header = try AgeHeader.parse(file)
        let payloadStart = header.payloadOffset + 16
        let firstChunkEnd = payloadStart + AgeStream.encryptedChunkSize
        for length in Array(0..<payloadStart + 20) + [firstChunkEnd - 1, firstChunkEnd, firstChunkEnd + 5, firstChunkEnd + 20, file.count - 1] {
            let expected: AgeError = switch length {
            case ..<header.payloadOffset: .truncated(.header)
            case ..<payloadStart: .truncated(.payloadNonce)
            case ..<(payloadStart + 16): .truncated(.payload(chunk: 0))
            case ..<firstChunkEnd: .payloadAuthenticationFailed(chunk: 0)
            case ..<(firstChunkEnd + 16): .truncated(.payload(chunk: 1))
            default: .payloadAuthenticationFailed(chunk: 1)
            }
            #expect(throws: expected, "length \(length)") { try Age.decrypt(Array(file[..<length]), identities: [identity]) }
        }
        #expect(AgeError.truncated(.header).description.contains("truncated"))
        #expect(AgeError.truncated(.payload(chunk: 1)).description.contains("truncated"))
    }

    @Test func unknownAndGreaseStanzasAreSkipped() throws {
        struct GreaseRecipient: AgeRecipient {
            func wrap(fileKey: [UInt8]) throws -> [AgeStanza] {
                [AgeStanza(type: "grease-!#", arguments: ["x", "y~z"], body: Array(repeating: 7, count: 100))]
            }
        }
        let identity = X25519Identity.generate()
        let file = try Age.encrypt(Array("ok".utf8), to: [GreaseRecipient(), identity.recipient, GreaseRecipient()])
        #expect(try Age.decrypt(file, identities: [identity]) == Array("ok".utf8))
        #expect(try Age.header(of: file).stanzas.map(\.type) == ["grease-!#", "X25519", "grease-!#"])
    }

    @Test func base64IsStrict() {
        #expect(StrictBase64.decode(Array("AA".utf8), padded: false) == [0])
        #expect(StrictBase64.decode(Array("AB".utf8), padded: false) == nil) // non-zero unused bits
        #expect(StrictBase64.decode(Array("AA==".utf8), padded: false) == nil)
        #expect(StrictBase64.decode(Array("AA==".utf8), padded: true) == [0])
        #expect(StrictBase64.decode(Array("AA".utf8), padded: true) == nil)
        #expect(StrictBase64.decode(Array("A".utf8), padded: false) == nil)
        for count in 0..<10 {
            let bytes = (0..<count).map { UInt8($0 * 37 & 0xff) }
            for padded in [false, true] {
                #expect(StrictBase64.decode(StrictBase64.encode(bytes, padded: padded), padded: padded) == bytes)
                #expect(StrictBase64.encodeString(bytes, padded: true) == Data(bytes).base64EncodedString())
            }
        }
    }
}
