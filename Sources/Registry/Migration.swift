import Foundation

/// One numbered SQL migration from `schema/` (`0001_registry_tables.sql` → version 1).
public struct Migration: Sendable, Hashable, Codable {
    public let version: Int
    public let name: String
    public let sql: String

    public init(version: Int, name: String, sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
    }

    /// The file name this migration has in `schema/`.
    public var fileName: String { String(format: "%04d_%@.sql", version, name) }

    /// The migrations compiled into keyline (`EmbeddedMigrations.swift`, generated from `schema/`
    /// by `make schema-embed`; RegistryTests checks the two are identical).
    public static var embedded: [Migration] { EmbeddedMigrations.all }

    /// Reads `NNNN_name.sql` files from `directory`, in version order. Other files are ignored.
    public static func load(directory: String) throws(MigrationError) -> [Migration] {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory)
        } catch {
            throw .unreadableDirectory(directory)
        }
        var migrations: [Migration] = []
        for fileName in names.sorted() where fileName.hasSuffix(".sql") {
            guard let parsed = parse(fileName: fileName) else { throw .badFileName(fileName, directory: directory) }
            let path = (directory as NSString).appendingPathComponent(fileName)
            guard let data = FileManager.default.contents(atPath: path),
                  let sql = String(data: data, encoding: .utf8) else {
                throw .unreadableFile(path)
            }
            if let clash = migrations.first(where: { $0.version == parsed.version }) {
                throw .duplicateVersion(parsed.version, clash.fileName, fileName)
            }
            migrations.append(Migration(version: parsed.version, name: parsed.name, sql: sql))
        }
        return migrations.sorted { $0.version < $1.version }
    }

    /// `0001_registry_tables.sql` → (1, "registry_tables").
    static func parse(fileName: String) -> (version: Int, name: String)? {
        guard fileName.hasSuffix(".sql") else { return nil }
        let stem = fileName.dropLast(4)
        let parts = stem.split(separator: "_", maxSplits: 1)
        guard parts.count == 2, parts[0].count == 4, parts[0].allSatisfy(\.isASCII), let version = Int(parts[0]),
              version > 0, !parts[1].isEmpty,
              parts[1].allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "_") }) else { return nil }
        return (version, String(parts[1]))
    }
}

/// Problems with the migration files themselves or with what the database has applied.
public enum MigrationError: Error, Sendable, CustomStringConvertible, Equatable {
    case unreadableDirectory(String)
    case unreadableFile(String)
    case badFileName(String, directory: String)
    case duplicateVersion(Int, String, String)
    /// An applied migration's SQL no longer matches the file: someone edited history.
    case checksumMismatch(version: Int, name: String, applied: String, file: String)
    /// The database has a migration this keyline does not know (it is older than the schema).
    case unknownAppliedVersion(Int, name: String)
    /// A migration's SQL failed; it was rolled back, later ones were not attempted.
    case failed(version: Int, name: String, PostgresError)

    public var description: String {
        switch self {
        case .unreadableDirectory(let directory):
            "cannot read the schema folder \(directory); pass --schema DIR or run from the project folder"
        case .unreadableFile(let path):
            "cannot read migration \(path) as UTF-8 text"
        case .badFileName(let name, let directory):
            "\(directory)/\(name) is not named NNNN_name.sql (four digits, underscore, lowercase name); rename it"
        case .duplicateVersion(let version, let first, let second):
            "migrations \(first) and \(second) both have version \(version); renumber one"
        case .checksumMismatch(let version, let name, let applied, let file):
            "migration \(String(format: "%04d", version))_\(name) was applied with SHA-256 \(applied.prefix(16))… "
                + "but the file now hashes to \(file.prefix(16))…; applied migrations must never change: "
                + "restore the file and put the change in a new migration"
        case .unknownAppliedVersion(let version, let name):
            "the database has migration \(String(format: "%04d", version))_\(name) that this keyline does not know; "
                + "use a newer keyline (or the matching schema folder)"
        case .failed(let version, let name, let error):
            "migration \(String(format: "%04d", version))_\(name) failed and was rolled back: \(error)"
        }
    }
}
