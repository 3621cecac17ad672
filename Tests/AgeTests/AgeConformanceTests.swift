import Foundation
import Testing
@testable import Age

/// Every C2SP age vector (passphrase and hybrid ones are not shipped) decrypts to its expected
/// payload hash, or fails with the expected class of error after releasing exactly the
/// expected plaintext.
@Suite struct AgeConformanceTests {
    @Test func allVectorsArePresent() {
        #expect(AgeVector.allNames().count == 73)
    }

    @Test(arguments: AgeVector.allNames())
    func vector(_ name: String) throws {
        let vector = try AgeVector(named: name)
        let identities: [any AgeIdentity] = try vector.identities.map { try X25519Identity($0) }
        var released = Data()
        var failure: AgeError?
        do {
            try Age.decrypt(vector.file, identities: identities.isEmpty ? [X25519Identity.generate()] : identities) { released += $0 }
        } catch let error as AgeError {
            failure = error
        }
        switch vector.expect {
        case "success":
            #expect(failure == nil, "\(name): \(failure.map(String.init(describing:)) ?? "")")
            #expect(sha256Hex(released) == vector.payloadSHA256)
        case "payload failure":
            #expect(failure?.category == .payload, "\(name): \(failure.map(String.init(describing:)) ?? "no error")")
            #expect(sha256Hex(released) == vector.payloadSHA256)
        default:
            let expected: AgeError.Category? = switch vector.expect {
            case "no match": .noMatch
            case "HMAC failure": .headerMAC
            case "header failure": .header
            case "armor failure": .armor
            default: nil
            }
            #expect(expected != nil, "\(name): unknown expectation \(vector.expect)")
            #expect(failure?.category == expected, "\(name): \(failure.map(String.init(describing:)) ?? "no error")")
            #expect(released.isEmpty)
        }
    }

    /// Any vector whose header parses re-encodes to the same bytes (README: header round-trip).
    @Test(arguments: AgeVector.allNames())
    func headerRoundTrip(_ name: String) throws {
        let vector = try AgeVector(named: name)
        let binary = vector.armored ? (try? AgeArmor.decode(vector.file)) : vector.file
        guard let binary, let header = try? AgeHeader.parse(binary) else { return }
        let encoded = AgeHeader.encode(withoutMAC: AgeHeader.encodeWithoutMAC(header.stanzas), mac: header.mac)
        #expect(encoded == Array(binary[..<header.payloadOffset]))
    }

    /// Armored vectors that decode re-encode to the canonical armor of the same bytes.
    @Test(arguments: AgeVector.allNames())
    func armorRoundTrip(_ name: String) throws {
        let vector = try AgeVector(named: name)
        guard vector.armored, let binary = try? AgeArmor.decode(vector.file) else { return }
        #expect(try AgeArmor.decode(AgeArmor.encode(binary)) == binary)
        let canonical = String(decoding: vector.file, as: UTF8.self)
            .replacingOccurrences(of: "\r\n", with: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(String(decoding: AgeArmor.encode(binary), as: UTF8.self).trimmingCharacters(in: .newlines) == canonical)
    }
}
