import DFU

/// Faults a simulated device can be told to show. Every fault is deterministic: counts are exact,
/// and `SimulatedFaults.random(seed:)` derives a plan from a seed so a failing run can be repeated.
public struct SimulatedFaults: Sendable, Hashable, Codable {
    /// Drop off the bus after this many control transfers (counted from when the fault is set);
    /// the device stays away until it is power-cycled.
    public var disconnectAfterTransfers: Int?
    /// Stall this control transfer (1-based, counted from when the fault is set), once. In DFU mode
    /// the device then sits in dfuERROR with errSTALLEDPKT, as DFU 1.1 §6.1 prescribes.
    public var stallTransfer: Int?
    /// Fail the Nth DfuSe operation the bootloader executes (erase, set-address or data block;
    /// 1-based) with this status, leaving the device in dfuERROR.
    public var failOperation: FailedOperation?
    /// Multiplies every flash and USB time: a worn or slow device.
    public var slowdown: Double
    /// After leaving DFU (or a reset) the device never enumerates again.
    public var noReenumerationAfterLeave: Bool

    public struct FailedOperation: Sendable, Hashable, Codable {
        public var number: Int
        public var status: DFUStatusCode
        public init(number: Int, status: DFUStatusCode) {
            self.number = number
            self.status = status
        }
    }

    public init(disconnectAfterTransfers: Int? = nil, stallTransfer: Int? = nil, failOperation: FailedOperation? = nil,
                slowdown: Double = 1, noReenumerationAfterLeave: Bool = false) {
        self.disconnectAfterTransfers = disconnectAfterTransfers
        self.stallTransfer = stallTransfer
        self.failOperation = failOperation
        self.slowdown = slowdown
        self.noReenumerationAfterLeave = noReenumerationAfterLeave
    }

    public static let none = SimulatedFaults()

    /// One fault chosen from `seed` (SplitMix64): the same seed always gives the same plan.
    public static func random(seed: UInt64) -> SimulatedFaults {
        var rng = SplitMix64(seed: seed)
        switch rng.next() % 5 {
        case 0: return SimulatedFaults(disconnectAfterTransfers: Int(10 + rng.next() % 200))
        case 1: return SimulatedFaults(stallTransfer: Int(5 + rng.next() % 100))
        case 2:
            let errors = DFUStatusCode.allCases.filter { $0 != .ok }
            return SimulatedFaults(failOperation: FailedOperation(number: Int(1 + rng.next() % 20),
                                                                  status: errors[Int(rng.next() % UInt64(errors.count))]))
        case 3: return SimulatedFaults(slowdown: 2 + Double(rng.next() % 8))
        default: return SimulatedFaults(noReenumerationAfterLeave: true)
        }
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): small, fast, and the same everywhere.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

import Foundation

extension NSLock {
    /// `withLock` that keeps a typed error.
    func locked<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        lock()
        defer { unlock() }
        return try body()
    }
}
