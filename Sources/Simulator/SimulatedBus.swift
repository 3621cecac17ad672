import DeviceBus
import Foundation

/// How a USB 2.0 hub carries full-speed devices to a high-speed host: through transaction
/// translators (TTs, USB 2.0 §11.14). Each TT runs one full-speed (12 Mbit/s) bus downstream.
///
/// Particle devices are full-speed only (dfu-protocol.md §5.2, "Both MCUs use USB **full speed**
/// (12 Mbit/s) with a 64-byte EP0"), so behind a high-speed hub every one of their transfers goes
/// through a TT:
/// - `single`: one TT for the whole hub; all its full-speed devices share 12 Mbit/s.
/// - `multi`: one TT per downstream port; each device has 12 Mbit/s of its own.
///
/// The high-speed link above the hub (480 Mbit/s) is not modelled as a limit: 16 full-speed TTs
/// use at most 192 Mbit/s of it (an assumption that each hub has its own root port or that the
/// link is otherwise idle). Split-transaction overhead on the high-speed side and the bus time
/// of NAKs while a device is busy are not modelled either (assumptions: both are small next to
/// the data stage of a 4 KB transfer).
///
/// Default: `multi`. A powered industrial 16-port hub bought for a programming station (Digi
/// Hubport/14 and its kind) advertises a "Multi-TT switched USB architecture" in which each
/// port "gets their 12 Mbps guarantee" (digi.com knowledge base, "Understanding the Multi-TT
/// switched USB architecture"); cheap consumer hubs are mostly single-TT (atomminer KB, "Most
/// hubs use a cheaper Single-TT (STT) design"). Benchmark both: `--fleet photon:16@hub=single`.
public enum HubKind: String, Sendable, Hashable, Codable, CaseIterable, CustomStringConvertible {
    case single
    case multi

    public static let `default` = HubKind.multi
    public var description: String { rawValue + "-TT" }
}

/// One transaction translator: a 12 Mbit/s full-speed bus that carries one transfer's packets
/// at a time. Transfers reserve wire time first come, first served, in the earliest gap after the
/// moment they can start (a device still busy with flash reserves later without holding up the
/// others). A leaf lock: nothing is called while it is held.
public final class TransactionTranslator: @unchecked Sendable {
    public typealias Instant = ContinuousClock.Instant
    private let lock = NSLock()
    // Guarded by `lock`: reserved wire intervals, sorted, non-overlapping.
    private var slots: [(start: Instant, end: Instant)] = []

    public init() {}

    /// Reserves `length` of wire time at the earliest instant ≥ `earliest` that is free; returns
    /// the start of the slot. Slots ending before `now` are forgotten.
    public func reserve(earliest: Instant, length: Duration, now: Instant = .now) -> Instant {
        lock.withLock {
            slots.removeAll { $0.end <= now }
            guard length > .zero else { return earliest }
            var start = earliest
            var index = 0
            while index < slots.count {
                let slot = slots[index]
                if slot.end <= start { index += 1; continue }
                if slot.start >= start + length { break }
                start = slot.end
                index += 1
            }
            slots.insert((start, start + length), at: index)
            return start
        }
    }
}

/// The hubs of a fleet: which TT carries the device at each port.
final class SimulatedHubs: @unchecked Sendable {
    private let lock = NSLock()
    private let defaultKind: HubKind
    // Guarded by `lock`.
    private var kinds: [USBPortPath: HubKind]
    private var shared: [USBPortPath: TransactionTranslator] = [:]
    private var perPort: [USBPortPath: TransactionTranslator] = [:]

    init(kinds: [USBPortPath: HubKind], defaultKind: HubKind) {
        self.kinds = kinds
        self.defaultKind = defaultKind
    }

    /// The hub a port hangs off: the path without its last port (nil for a root port).
    static func hubPath(of port: USBPortPath) -> USBPortPath? {
        port.ports.count > 1 ? USBPortPath(bus: port.bus, ports: Array(port.ports.dropLast())) : nil
    }

    func kind(ofHubAt path: USBPortPath) -> HubKind { lock.withLock { kinds[path] ?? defaultKind } }

    func setKind(_ kind: HubKind, ofHubAt path: USBPortPath) {
        lock.withLock {
            kinds[path] = kind
            shared[path] = nil
        }
    }

    /// The TT that carries a full-speed device at `port`: the hub's one TT (single-TT), or the
    /// port's own (multi-TT, and a root port, which runs its own full-speed bus).
    func translator(for port: USBPortPath) -> TransactionTranslator {
        lock.withLock {
            if let hub = Self.hubPath(of: port), (kinds[hub] ?? defaultKind) == .single {
                if let tt = shared[hub] { return tt }
                let tt = TransactionTranslator()
                shared[hub] = tt
                return tt
            }
            if let tt = perPort[port] { return tt }
            let tt = TransactionTranslator()
            perPort[port] = tt
            return tt
        }
    }
}
