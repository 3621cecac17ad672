import Foundation
import Registry

/// The two calls particle-cli makes (reference/particle-cli-keys.md §3): the public key upload
/// `POST /v1/provisioning/{deviceId}` and product membership `POST /v1/products/{product}/devices`,
/// both with form-encoded bodies (particle-api-js's Agent `form`).
public enum CloudRequests {
    /// The upload's form fields, in particle-cli's order. `order` only has to be unique-ish:
    /// particle-cli uses `manual_<Date.now()>`; keyline adds the upload's row ID so two uploads in
    /// the same millisecond differ.
    public static func provisioningForm(deviceID: String, spkiDER: [UInt8], algorithm: RegisteredKeyAlgorithm,
                                        productID: String?, order: String) -> [(String, String)] {
        var fields = [("deviceID", deviceID.lowercased()), ("publicKey", publicKeyPEM(spkiDER)),
                      ("filename", "cli"), ("order", order),
                      // The API spells EC as `ecc` (particle-cli `keys send`: 'rsa' if openssl rsa worked, else 'ecc').
                      ("algorithm", algorithm == .rsa ? "rsa" : "ecc")]
        if let productID { fields.append(("product_id", productID)) }
        return fields
    }

    /// `id=<deviceId>`: adds the device to the product (or confirms it is a member).
    public static func membershipForm(deviceID: String) -> [(String, String)] {
        [("id", deviceID.lowercased())]
    }

    /// `application/x-www-form-urlencoded` (WHATWG URL standard: unreserved bytes as they are,
    /// space as `+`, everything else percent-encoded), so the PEM's newlines, `+`, `/` and `=`
    /// arrive intact.
    public static func formEncoded(_ fields: [(String, String)]) -> String {
        fields.map { "\(formEscape($0.0))=\(formEscape($0.1))" }.joined(separator: "&")
    }

    static func formEscape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "*"), UInt8(ascii: "-"), UInt8(ascii: "."),
                 UInt8(ascii: "_"):
                out.unicodeScalars.append(UnicodeScalar(byte))
            case UInt8(ascii: " "):
                out.append("+")
            default:
                let hex = Array("0123456789ABCDEF".utf8)
                out.append("%")
                out.unicodeScalars.append(UnicodeScalar(hex[Int(byte >> 4)]))
                out.unicodeScalars.append(UnicodeScalar(hex[Int(byte & 0x0F)]))
            }
        }
        return out
    }

    /// SubjectPublicKeyInfo DER as PEM (`-----BEGIN PUBLIC KEY-----`, base64 in 64-column lines),
    /// what `openssl … -pubout` writes and particle-cli sends.
    public static func publicKeyPEM(_ spkiDER: [UInt8]) -> String {
        let base64 = Data(spkiDER).base64EncodedString()
        var lines = ["-----BEGIN PUBLIC KEY-----"]
        var index = base64.startIndex
        while index < base64.endIndex {
            let end = base64.index(index, offsetBy: 64, limitedBy: base64.endIndex) ?? base64.endIndex
            lines.append(String(base64[index..<end]))
            index = end
        }
        lines.append("-----END PUBLIC KEY-----")
        return lines.joined(separator: "\n") + "\n"
    }

    /// A path segment: device IDs are hex and product IDs digits or a slug, but a pipeline's
    /// product is still escaped so it cannot change the path.
    static func pathSegment(_ text: String) -> String {
        formEscape(text).replacingOccurrences(of: "+", with: "%20")
    }
}
