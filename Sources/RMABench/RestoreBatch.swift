import FailurePolicy
import Foundation
import LocalFiles

/// `keyline restore --batch FILE.csv`: a tray of returned devices, one row each.
public enum RestoreBatch {
    /// device_id,reason,ticket rows; a first row starting with "device" is a header; blank lines
    /// and lines starting with # are skipped. Fields may be double-quoted. `product` applies to
    /// every row.
    public static func parse(path: String, product: String? = nil) throws -> [RestoreRequest] {
        let text = String(decoding: try InputFile.read(path), as: UTF8.self)
        var requests: [RestoreRequest] = []
        for (number, line) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") || (number == 0 && trimmed.lowercased().hasPrefix("device")) { continue }
            guard let fields = csvFields(trimmed) else {
                throw RestoreBatchError.unterminatedQuote(file: path, line: number + 1)
            }
            let id = fields[0].lowercased()
            guard id.utf8.count == 24, id.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else {
                throw RestoreBatchError.notADeviceID(file: path, line: number + 1, field: fields[0])
            }
            func field(_ index: Int) -> String? { fields.count > index && !fields[index].isEmpty ? fields[index] : nil }
            // One restore per device: the same device twice would run two restores on it at once.
            guard !requests.contains(where: { $0.deviceID == id }) else {
                throw RestoreBatchError.listedTwice(file: path, line: number + 1, deviceID: id)
            }
            requests.append(RestoreRequest(deviceID: id, productID: product, reason: field(1), ticket: field(2)))
        }
        guard !requests.isEmpty else { throw RestoreBatchError.empty(file: path) }
        return requests
    }

    /// One CSV row's fields (RFC 4180 within a line): a double-quoted field may hold commas and
    /// `""` for a quote; spaces around a field are dropped. nil when a quote is never closed.
    static func csvFields(_ line: String) -> [String]? {
        var fields: [String] = []
        var field = ""
        var quoted = false
        var wasQuoted = false
        var characters = Substring(line)
        while let character = characters.popFirst() {
            if quoted {
                if character == "\"" {
                    if characters.first == "\"" { field.append("\""); characters.removeFirst() } else { quoted = false }
                } else {
                    field.append(character)
                }
            } else if character == "\"" && field.allSatisfy(\.isWhitespace) {
                quoted = true
                wasQuoted = true
                field = ""
            } else if character == "," {
                fields.append(wasQuoted ? field : field.trimmingCharacters(in: .whitespaces))
                field = ""
                wasQuoted = false
            } else if !(wasQuoted && character.isWhitespace) {
                field.append(character)
            }
        }
        guard !quoted else { return nil }
        fields.append(wasQuoted ? field : field.trimmingCharacters(in: .whitespaces))
        return fields
    }
}

/// A batch CSV that cannot be restored as written; nothing was restored.
public enum RestoreBatchError: Error, Sendable, Hashable, CustomStringConvertible, ClassifiedError {
    case notADeviceID(file: String, line: Int, field: String)
    case listedTwice(file: String, line: Int, deviceID: String)
    case empty(file: String)
    /// A double-quoted field never closed on its line.
    case unterminatedQuote(file: String, line: Int)

    public var file: String {
        switch self {
        case .notADeviceID(let file, _, _), .listedTwice(let file, _, _), .empty(let file),
             .unterminatedQuote(let file, _): file
        }
    }

    public var description: String {
        switch self {
        case .notADeviceID(let file, let line, let field): "\(file):\(line): \"\(field)\" is not a device ID (24 hex digits)"
        case .listedTwice(let file, let line, let id): "\(file):\(line): device \(id) is listed twice"
        case .empty(let file): "\(file): no device rows"
        case .unterminatedQuote(let file, let line):
            "\(file):\(line): a double-quoted field is not closed; quote the whole field (\"RMA, batch 4\") and double any quote inside it"
        }
    }

    public var failureClass: FailureClass { .badInput }
}
