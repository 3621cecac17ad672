import Foundation
import HexEncoding

/// A statement parameter as sent to libpq: text, or binary for `bytea`, or NULL.
public enum PostgresValue: Sendable, Hashable {
    case null
    case text(String)
    case bytea([UInt8])
}

/// A Swift value that can be bound to a `$n` parameter.
public protocol PostgresEncodable: Sendable {
    var postgresValue: PostgresValue { get }
}

extension PostgresValue: PostgresEncodable {
    public var postgresValue: PostgresValue { self }
}

extension String: PostgresEncodable {
    public var postgresValue: PostgresValue { .text(self) }
}

extension Int: PostgresEncodable {
    public var postgresValue: PostgresValue { .text(String(self)) }
}

extension Int64: PostgresEncodable {
    public var postgresValue: PostgresValue { .text(String(self)) }
}

extension Int32: PostgresEncodable {
    public var postgresValue: PostgresValue { .text(String(self)) }
}

extension Bool: PostgresEncodable {
    public var postgresValue: PostgresValue { .text(self ? "true" : "false") }
}

extension Double: PostgresEncodable {
    public var postgresValue: PostgresValue { .text(String(self)) }
}

extension Date: PostgresEncodable {
    /// ISO 8601 in UTC with microseconds, which `timestamptz` accepts under any DateStyle.
    public var postgresValue: PostgresValue {
        let microseconds = Int64((timeIntervalSince1970 * 1_000_000).rounded())
        return .text(PostgresTimestamp.format(unixMicroseconds: microseconds))
    }
}

extension Optional: PostgresEncodable where Wrapped: PostgresEncodable {
    public var postgresValue: PostgresValue { self?.postgresValue ?? .null }
}

/// `text[]`, in PostgreSQL's array literal syntax (every element quoted and escaped).
extension Array: PostgresEncodable where Element == String {
    public var postgresValue: PostgresValue {
        let elements = map { element in
            "\"" + element.replacingOccurrences(of: "\\", with: "\\\\")
                .replacingOccurrences(of: "\"", with: "\\\"") + "\""
        }
        return .text("{" + elements.joined(separator: ",") + "}")
    }
}

/// A Swift value that can be read from a result column (text format).
public protocol PostgresDecodable {
    /// `text` is nil for SQL NULL.
    init(postgresText text: String?, column: String) throws(PostgresError)
}

extension PostgresError {
    static func decoding(_ column: String, _ type: String, _ text: String?) -> PostgresError {
        guard let text else {
            return PostgresError(kind: .decoding, message: "column \(column) is NULL, expected \(type)")
        }
        let shown = text.count > 40 ? String(text.prefix(40)) + "…" : text
        return PostgresError(kind: .decoding, message: "column \(column) holds \"\(shown)\", expected \(type)")
    }
}

extension String: PostgresDecodable {
    public init(postgresText text: String?, column: String) throws(PostgresError) {
        guard let text else { throw .decoding(column, "text", nil) }
        self = text
    }
}

extension Int64: PostgresDecodable {
    public init(postgresText text: String?, column: String) throws(PostgresError) {
        guard let text, let value = Int64(text) else { throw .decoding(column, "an integer", text) }
        self = value
    }
}

extension Int: PostgresDecodable {
    public init(postgresText text: String?, column: String) throws(PostgresError) {
        guard let text, let value = Int(text) else { throw .decoding(column, "an integer", text) }
        self = value
    }
}

extension Int32: PostgresDecodable {
    public init(postgresText text: String?, column: String) throws(PostgresError) {
        guard let text, let value = Int32(text) else { throw .decoding(column, "a 32-bit integer", text) }
        self = value
    }
}

extension Bool: PostgresDecodable {
    public init(postgresText text: String?, column: String) throws(PostgresError) {
        switch text {
        case "t": self = true
        case "f": self = false
        default: throw .decoding(column, "a boolean", text)
        }
    }
}

extension Double: PostgresDecodable {
    public init(postgresText text: String?, column: String) throws(PostgresError) {
        guard let text, let value = Double(text) else { throw .decoding(column, "a number", text) }
        self = value
    }
}

extension Date: PostgresDecodable {
    public init(postgresText text: String?, column: String) throws(PostgresError) {
        guard let text, let microseconds = PostgresTimestamp.parse(text) else {
            throw .decoding(column, "a timestamp with time zone", text)
        }
        self = Date(timeIntervalSince1970: Double(microseconds) / 1_000_000)
    }
}

extension Optional: PostgresDecodable where Wrapped: PostgresDecodable {
    public init(postgresText text: String?, column: String) throws(PostgresError) {
        guard let text else { self = nil; return }
        self = try Wrapped(postgresText: text, column: column)
    }
}

/// `bytea` in the hex output format (`\x0a1b…`, PostgreSQL's default since 9.0).
extension Array: PostgresDecodable where Element == UInt8 {
    public init(postgresText text: String?, column: String) throws(PostgresError) {
        guard let text, text.hasPrefix("\\x"), let bytes = Hex.decode(String(text.dropFirst(2))) else {
            throw .decoding(column, "bytea in hex format", text)
        }
        self = bytes
    }
}

/// One-dimensional `text[]` in PostgreSQL's array output syntax.
public struct PostgresTextArray: PostgresDecodable, Sendable, Hashable {
    public var elements: [String?]

    public init(postgresText text: String?, column: String) throws(PostgresError) {
        guard let text, let parsed = Self.parse(text) else { throw .decoding(column, "a text array", text) }
        elements = parsed
    }

    static func parse(_ text: String) -> [String?]? {
        let characters = Array(text)
        guard characters.first == "{", characters.last == "}" else { return nil }
        if characters.count == 2 { return [] }
        var elements: [String?] = []
        var index = 1
        while index < characters.count - 1 {
            var element = ""
            if characters[index] == "\"" {
                index += 1
                while index < characters.count - 1, characters[index] != "\"" {
                    if characters[index] == "\\" { index += 1 }
                    guard index < characters.count - 1 else { return nil }
                    element.append(characters[index])
                    index += 1
                }
                guard characters[index] == "\"" else { return nil }
                index += 1
                elements.append(element)
            } else {
                while index < characters.count - 1, characters[index] != "," {
                    element.append(characters[index])
                    index += 1
                }
                // Unquoted NULL is SQL NULL; a string "NULL" would have been quoted.
                elements.append(element == "NULL" ? nil : element)
            }
            if index < characters.count - 1 {
                guard characters[index] == "," else { return nil }
                index += 1
            }
        }
        return elements
    }
}

/// `timestamptz` text in the ISO DateStyle; sessions run with `TimeZone=UTC` (see PostgresConnection).
enum PostgresTimestamp {
    static func format(unixMicroseconds: Int64) -> String {
        let seconds = floorDivide(unixMicroseconds, 1_000_000)
        let micros = unixMicroseconds - seconds * 1_000_000
        let days = floorDivide(seconds, 86_400)
        let secondOfDay = seconds - days * 86_400
        let (year, month, day) = civilFromDays(days)
        return String(format: "%04lld-%02lld-%02lld %02lld:%02lld:%02lld.%06lld+00",
                      year, month, day, secondOfDay / 3600, secondOfDay / 60 % 60, secondOfDay % 60, micros)
    }

    /// Parses `YYYY-MM-DD HH:MM:SS[.ffffff]±HH[:MM[:SS]]` into microseconds since 1970.
    static func parse(_ text: String) -> Int64? {
        let scalars = Array(text.utf8)
        var index = 0
        func number(_ digits: Int) -> Int64? {
            guard index + digits <= scalars.count else { return nil }
            var value: Int64 = 0
            for _ in 0..<digits {
                let c = scalars[index]
                guard c >= 48, c <= 57 else { return nil }
                value = value * 10 + Int64(c - 48)
                index += 1
            }
            return value
        }
        func expect(_ character: Character) -> Bool {
            guard index < scalars.count, scalars[index] == character.asciiValue else { return false }
            index += 1
            return true
        }
        guard let year = number(4), expect("-"), let month = number(2), expect("-"), let day = number(2),
              expect(" "), let hour = number(2), expect(":"), let minute = number(2), expect(":"),
              let second = number(2) else { return nil }
        var micros: Int64 = 0
        if expect(".") {
            var digits = 0
            while index < scalars.count, scalars[index] >= 48, scalars[index] <= 57 {
                if digits < 6 { micros = micros * 10 + Int64(scalars[index] - 48) }
                digits += 1
                index += 1
            }
            for _ in digits..<max(digits, 6) { micros *= 10 }
        }
        guard index < scalars.count, scalars[index] == UInt8(ascii: "+") || scalars[index] == UInt8(ascii: "-") else {
            return nil
        }
        let sign: Int64 = scalars[index] == UInt8(ascii: "-") ? -1 : 1
        index += 1
        guard let offsetHours = number(2) else { return nil }
        var offsetSeconds = offsetHours * 3600
        if expect(":"), let offsetMinutes = number(2) {
            offsetSeconds += offsetMinutes * 60
            if expect(":"), let extra = number(2) { offsetSeconds += extra }
        }
        guard index == scalars.count else { return nil }
        let days = daysFromCivil(year: year, month: month, day: day)
        let local = days * 86_400 + hour * 3600 + minute * 60 + second
        return (local - sign * offsetSeconds) * 1_000_000 + micros
    }

    private static func floorDivide(_ a: Int64, _ b: Int64) -> Int64 {
        a >= 0 ? a / b : -((-a + b - 1) / b)
    }

    // Howard Hinnant's days-from-civil algorithm (proleptic Gregorian calendar).
    static func daysFromCivil(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = floorDivide(y, 400)
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    static func civilFromDays(_ days: Int64) -> (Int64, Int64, Int64) {
        let z = days + 719_468
        let era = floorDivide(z, 146_097)
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}

/// One result row. Values are copied out of libpq's result, so rows outlive it and are Sendable.
public struct PostgresRow: Sendable {
    public let columns: [String]
    let values: [String?]

    init(columns: [String], values: [String?]) {
        self.columns = columns
        self.values = values
    }

    /// Reads column `name` as `T` (`String?` etc. for nullable columns).
    public func decode<T: PostgresDecodable>(_ name: String, as type: T.Type = T.self) throws(PostgresError) -> T {
        guard let index = columns.firstIndex(of: name) else {
            throw PostgresError(kind: .decoding,
                                message: "no column \(name) in the result (columns: \(columns.joined(separator: ", ")))")
        }
        return try T(postgresText: values[index], column: name)
    }

    /// Reads the column at `index` as `T`.
    public func decode<T: PostgresDecodable>(at index: Int, as type: T.Type = T.self) throws(PostgresError) -> T {
        guard values.indices.contains(index) else {
            throw PostgresError(kind: .decoding, message: "no column #\(index) in a result of \(values.count) columns")
        }
        return try T(postgresText: values[index], column: columns[index])
    }

    public func isNull(_ name: String) -> Bool {
        guard let index = columns.firstIndex(of: name) else { return true }
        return values[index] == nil
    }
}
