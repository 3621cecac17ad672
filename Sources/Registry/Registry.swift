import CLibPQ

/// Job records, key registrations, escrow objects, restorations and the audit trail in
/// PostgreSQL, through libpq.
public enum Registry {}
