import Foundation

/// The station preflight's proof that a store takes a new object once and refuses a second write
/// of the same name (`keyline station check`, issue 23): the write-once primitive the store's puts
/// rely on (S3 `If-None-Match: *`, the directory's create-exclusive), tried on a probe object.
///
/// Probes live under `.keyline-station-checks/` at the store's root (under the prefix in S3):
/// never a device's key path (object keys never start with '.'), and left out of the listings an
/// audit walks (`objectPages`), so `keyline audit --check-store` does not report them as orphans.
/// Each check writes a new probe (a store that is write-once cannot reuse a name); they are small
/// and say what they are.
public enum StoreWriteProbe {
    /// The probes' folder, at the store's root.
    public static let folder = ".keyline-station-checks"

    /// What the second write of the same probe name met.
    public enum Outcome: String, Sendable, Equatable {
        /// Refused: the store keeps objects write-once.
        case secondWriteRefused
        /// Accepted: the store would let a second writer replace an escrow object.
        case secondWriteAccepted
    }

    /// A fresh probe name: the station (letters, digits, '-', '_' only), the time, a random tag.
    public static func name(station: String, now: Date = Date()) -> String {
        let safe = String(station.unicodeScalars.prefix(40).map {
            (48...57).contains($0.value) || (65...90).contains($0.value) || (97...122).contains($0.value) || $0 == "-" || $0 == "_"
                ? Character($0) : "_"
        })
        let stamp = Int64(now.timeIntervalSince1970)
        let tag = String(UInt32.random(in: .min ... .max), radix: 16)
        return "\(safe.isEmpty ? "station" : safe)-\(stamp)-\(tag).txt"
    }

    /// The probe's bytes: what it is, for whoever finds it.
    public static func contents(name: String) -> [UInt8] {
        Array("keyline station check: this object proves the store refuses a second write of the same name (\(name)); it holds no key\n".utf8)
    }
}

/// A store that can run the write-once probe (both of keyline's stores).
public protocol WriteOnceProbing: EscrowStore {
    /// Writes the probe `name` (from `StoreWriteProbe.name`) once — that write must succeed: the
    /// store is reachable and writable — then again, and says whether the second was refused.
    /// Throws the store's own error (unreachable, permission, read-only) when the first fails.
    func probeWriteOnce(name: String) async throws -> StoreWriteProbe.Outcome
}
