import Foundation
import HexEncoding

/// What a custodian's share file holds once opened (`age -d -i custodian.txt share.age`): a small
/// JSON document naming the epoch (its name and recipient, the commitment a recovery checks),
/// the threshold, the share's x coordinate and custodian, and the share itself in hex.
///
///     {"format":"keyline-escrow-share","version":1,"epoch":"2026-a","epoch_recipient":"age1…",
///      "threshold":3,"share_count":5,"x":2,"custodian":"alice","share":"<64 hex>"}
///
/// The registry records the SHA-256 of exactly these bytes, so a share is checked on its own
/// before any combining (Shamir has no integrity: one wrong share gives a wrong secret).
struct ShareDocument: Sendable, Equatable {
    static let format = "keyline-escrow-share"
    static let version = 1
    /// Real documents are about 300 bytes.
    static let maximumSize = 4 * 1024

    var epoch: String
    var epochRecipient: String
    var threshold: Int
    var shareCount: Int
    var x: Int
    var custodian: String
    var share: [UInt8]

    /// The document's bytes: fixed key order, one line, a newline (the values are names, hex
    /// and numbers, none of which need escaping; each was checked before it got here).
    func encoded() -> [UInt8] {
        let text = "{\"format\":\"\(Self.format)\",\"version\":\(Self.version),\"epoch\":\"\(epoch)\","
            + "\"epoch_recipient\":\"\(epochRecipient)\",\"threshold\":\(threshold),\"share_count\":\(shareCount),"
            + "\"x\":\(x),\"custodian\":\"\(custodian)\",\"share\":\"\(Hex.encode(share))\"}\n"
        return Array(text.utf8)
    }

    /// Parses a document, refusing anything but exactly the fields above with sane values.
    static func decode(_ bytes: [UInt8]) -> ShareDocument? {
        guard bytes.count <= maximumSize, bytes.first == UInt8(ascii: "{"),
              let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
              Set(object.keys) == ["format", "version", "epoch", "epoch_recipient", "threshold", "share_count", "x",
                                   "custodian", "share"],
              object["format"] as? String == format, (object["version"] as? NSNumber)?.intValue == version,
              let epoch = object["epoch"] as? String, let recipient = object["epoch_recipient"] as? String,
              let threshold = (object["threshold"] as? NSNumber)?.intValue, (2...255).contains(threshold),
              let count = (object["share_count"] as? NSNumber)?.intValue, (threshold...255).contains(count),
              let x = (object["x"] as? NSNumber)?.intValue, (1...255).contains(x),
              let custodian = object["custodian"] as? String,
              let hex = object["share"] as? String, hex.utf8.count == 64, let share = Hex.decode(hex) else { return nil }
        return ShareDocument(epoch: epoch, epochRecipient: recipient, threshold: threshold, shareCount: count, x: x,
                             custodian: custodian, share: share)
    }

    mutating func zero() {
        for index in share.indices { share[index] = 0 }
    }
}
