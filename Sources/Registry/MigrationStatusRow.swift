/// One migration in `keyline db status`: applied (when, by whom), pending, changed since it was
/// applied, or applied but unknown to this keyline.
public struct MigrationStatusRow: Sendable, Hashable {
    public enum State: String, Sendable {
        case applied, changed, unknown, pending
    }

    public let version: Int
    public let name: String
    public let state: State
    /// nil while pending.
    public let applied: AppliedMigration?
}

extension MigrationStatus {
    /// Applied and pending migrations, by version.
    public var rows: [MigrationStatusRow] {
        let changed = Set(changedSinceApplied.map(\.version))
        let unknown = Set(unknownApplied.map(\.version))
        var rows = applied.map { applied in
            MigrationStatusRow(version: applied.version, name: applied.name,
                               state: changed.contains(applied.version) ? .changed : unknown.contains(applied.version) ? .unknown : .applied,
                               applied: applied)
        }
        rows += pending.map { MigrationStatusRow(version: $0.version, name: $0.name, state: .pending, applied: nil) }
        return rows.sorted { $0.version < $1.version }
    }
}
