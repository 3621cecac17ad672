import DeviceBus
import DeviceKeys
import ParticlePlatform

/// How the devices of a new simulated line left Particle's factory (`keyline-sim serve --factory`):
/// - `keyed`: each has a key in its slot that the cloud already holds, as Particle ships devices;
/// - `blank`: empty key slots (Device OS makes a key at boot on Gen2, at the first cloud
///   connection on Gen3; the cloud holds none);
/// - `corrupt`: every device's key lost (below);
/// - `blank:N%`, `corrupt:N%` (combinable, e.g. `blank:50%,corrupt:10%`): that share of the fleet
///   blank or corrupt, the rest keyed. A corrupt device is the seeds' case: its key was lost and
///   Device OS made a new one, so the cloud holds a key (the factory one) the device no longer
///   has, and it blinks cyan until its key is restored or the new one uploaded.
/// Which devices get which state follows `--seed`, with exact counts (rounded down).
public struct FactoryState: Sendable, Equatable {
    public enum Kind: String, Sendable { case keyed, blank, corrupt }

    public var blankPercent = 0
    public var corruptPercent = 0

    public static let keyed = FactoryState()
    public static let blank = FactoryState(blankPercent: 100)

    public static func parse(_ spec: String) throws(FleetSpecError) -> FactoryState {
        var state = FactoryState()
        for item in spec.split(separator: ",").map(String.init) {
            let parts = item.split(separator: ":", maxSplits: 1).map(String.init)
            var percent = 100
            if parts.count == 2 {
                guard parts[1].hasSuffix("%"), let n = Int(parts[1].dropLast()), (0...100).contains(n) else {
                    throw FleetSpec.specError("--factory item \"\(item)\": the share must be N% (0 to 100%)")
                }
                percent = n
            }
            switch parts[0] {
            case "keyed" where parts.count == 1: break
            case "blank": state.blankPercent = percent
            case "corrupt": state.corruptPercent = percent
            default:
                throw FleetSpec.specError("--factory item \"\(item)\" is not keyed, blank[:N%] or corrupt[:N%]")
            }
        }
        guard state.blankPercent + state.corruptPercent <= 100 else {
            throw FleetSpec.specError("--factory \"\(spec)\": blank and corrupt shares add up to more than 100%")
        }
        return state
    }

    /// The state of each of `count` devices, in order: exactly ⌊count·N%⌋ blank and corrupt ones,
    /// chosen by `seed`.
    public func assign(count: Int, seed: UInt64) -> [Kind] {
        var kinds = [Kind](repeating: .keyed, count: count)
        var order = Array(0..<count)
        var rng = SplitMix64(seed: seed ^ 0xFAC7_0E1D)
        if count > 1 {
            for i in stride(from: count - 1, to: 0, by: -1) {
                order.swapAt(i, Int(rng.next() % UInt64(i + 1)))
            }
        }
        let blank = count * blankPercent / 100, corrupt = count * corruptPercent / 100
        for (rank, index) in order.enumerated() {
            if rank < blank { kinds[index] = .blank } else if rank < blank + corrupt { kinds[index] = .corrupt }
        }
        return kinds
    }
}

/// One planned device's factory state: the key in its slot and the public key the cloud was told.
struct FactoryKeys: Sendable {
    var slotKey: DevicePrivateKey?
    var cloudKey: DevicePublicKey?

    static func make(_ kind: FactoryState.Kind, platform: Platform) throws(SimulatorError) -> FactoryKeys {
        func generate() throws(SimulatorError) -> DevicePrivateKey {
            do { return try DevicePrivateKey.generate(platform.keyAlgorithm) } catch {
                throw .stateFile(path: "(factory key)", detail: "OpenSSL could not make a \(platform.keyAlgorithm.displayName) key: \(error)")
            }
        }
        switch kind {
        case .blank: return FactoryKeys()
        case .keyed:
            let key = try generate()
            return FactoryKeys(slotKey: key, cloudKey: key.publicKey)
        case .corrupt:
            // The factory key the cloud holds, and the new key Device OS made after losing it.
            let lost = try generate()
            return FactoryKeys(slotKey: try generate(), cloudKey: lost.publicKey)
        }
    }
}
