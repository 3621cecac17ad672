import CLibPQ
import Dispatch
import Foundation

// Statements on a `PostgresConnection`'s queue: parameters travel apart from the SQL text.
extension PostgresConnection {
    /// One statement through PQexecParams: parameters travel separately from the SQL text.
    @discardableResult
    func run(_ sql: String, _ parameters: [PostgresValue]) throws -> StatementResult {
        guard let handle else {
            throw PostgresError(kind: .connectionLost, message: "not connected", statement: Self.firstLine(sql))
        }
        // bytea goes in binary (format 1, type oid 17); everything else as text with the type
        // inferred by the server from the statement.
        var types: [Oid] = []
        var formats: [Int32] = []
        var lengths: [Int32] = []
        var buffers: [[CChar]?] = []
        for parameter in parameters {
            switch parameter {
            case .null:
                types.append(0); formats.append(0); lengths.append(0); buffers.append(nil)
            case .text(let text):
                types.append(0); formats.append(0); lengths.append(0); buffers.append(Array(text.utf8CString))
            case .bytea(let bytes):
                types.append(17); formats.append(1); lengths.append(Int32(bytes.count))
                buffers.append(bytes.isEmpty ? [0] : bytes.map { CChar(bitPattern: $0) })
            }
        }
        let result = withBufferPointers(buffers) { pointers in
            PQexecParams(handle, sql, Int32(parameters.count), types, pointers, lengths, formats, 0)
        }
        defer { PQclear(result) }
        return try Self.collect(result, connection: handle, sql: sql)
    }

    /// A multi-statement script without parameters. Only migrations use it: their SQL comes from
    /// `schema/`, never from data.
    func runScript(_ sql: String) throws {
        guard let handle else { throw PostgresError(kind: .connectionLost, message: "not connected") }
        let result = PQexec(handle, sql)
        defer { PQclear(result) }
        _ = try Self.collect(result, connection: handle, sql: sql)
    }

    static func collect(_ result: OpaquePointer?, connection: OpaquePointer, sql: String) throws -> StatementResult {
        guard let result else {
            throw error(from: nil, connection: connection, sql: sql)
        }
        switch PQresultStatus(result) {
        case PGRES_TUPLES_OK, PGRES_SINGLE_TUPLE:
            let columnCount = PQnfields(result)
            let columns = (0..<columnCount).map { String(cString: PQfname(result, $0)) }
            let rowCount = PQntuples(result)
            var rows: [PostgresRow] = []
            rows.reserveCapacity(Int(rowCount))
            for row in 0..<rowCount {
                let values: [String?] = (0..<columnCount).map { column in
                    PQgetisnull(result, row, column) == 1 ? nil : String(cString: PQgetvalue(result, row, column))
                }
                rows.append(PostgresRow(columns: columns, values: values))
            }
            return StatementResult(rows: rows, affectedRows: Int(rowCount))
        case PGRES_COMMAND_OK, PGRES_EMPTY_QUERY:
            let affected = Int(String(cString: PQcmdTuples(result))) ?? 0
            return StatementResult(rows: [], affectedRows: affected)
        default:
            throw error(from: result, connection: connection, sql: sql)
        }
    }

    static func error(from result: OpaquePointer?, connection: OpaquePointer, sql: String) -> PostgresError {
        func field(_ code: Character) -> String? {
            guard let result, let value = PQresultErrorField(result, Int32(code.asciiValue!)) else { return nil }
            return String(cString: value)
        }
        let sqlState = field("C")
        let lost = PQstatus(connection) != CONNECTION_OK
        let message = field("M") ?? errorMessage(connection)
        let kind: PostgresError.Kind = lost ? .connectionLost : .server
        return PostgresError(kind: kind, sqlState: sqlState, message: message, detail: field("D"), hint: field("H"),
                             constraint: field("n"), table: field("t"), column: field("c"),
                             statement: firstLine(sql))
    }

    static func errorMessage(_ connection: OpaquePointer) -> String {
        guard let message = PQerrorMessage(connection) else { return "unknown libpq error" }
        let lines = String(cString: message).split(separator: "\n")
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        return lines.isEmpty ? "unknown libpq error" : lines.joined(separator: "; ")
    }

    static func firstLine(_ sql: String) -> String {
        let line = sql.split(separator: "\n", omittingEmptySubsequences: true).first.map(String.init) ?? sql
        let trimmed = line.trimmingCharacters(in: .whitespaces)
        return trimmed.count > 120 ? String(trimmed.prefix(120)) + "…" : trimmed
    }
}

func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    let buffers = strings.map { Array($0.utf8CString) }
    return withBufferPointers(buffers.map { Optional($0) }) { pointers in
        // NULL-terminated array, as PQconnectdbParams requires.
        var terminated = Array(UnsafeBufferPointer(start: pointers, count: strings.count))
        terminated.append(nil)
        return terminated.withUnsafeBufferPointer { body($0.baseAddress!) }
    }
}

/// Pins every buffer for the duration of `body` and passes C pointers to them (nil for NULL).
func withBufferPointers<R>(_ buffers: [[CChar]?], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    var pointers: [UnsafePointer<CChar>?] = []
    var index = 0
    func pin() -> R {
        if index == buffers.count {
            if pointers.isEmpty { pointers.append(nil) }
            return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
        }
        guard let buffer = buffers[index] else {
            pointers.append(nil)
            index += 1
            return pin()
        }
        index += 1
        return buffer.withUnsafeBufferPointer { pointer in
            pointers.append(pointer.baseAddress)
            return pin()
        }
    }
    return pin()
}
