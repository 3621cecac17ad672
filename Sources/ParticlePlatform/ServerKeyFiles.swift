import DeviceKeys
import FailurePolicy

extension ServerKeyBlob {
    /// The blob for `platform` from a server key file as `keys server` and `keys server-blob` take
    /// it: a file of exactly the slot's size is a blob (kept byte for byte except the address and
    /// port), anything else a public key, PEM or DER. Without a file, Particle's own blob.
    public init(platform: Platform, keyFile bytes: [UInt8]?, address: ServerAddress?, port: UInt16?) throws {
        let base: Base
        if let bytes {
            base = bytes.count == platform.serverKeySlot.slot.size ? .blob(bytes) : .key(try KeyFile.parse(bytes).publicKey)
        } else {
            base = .blob(ParticleServerKeys.defaultBlob(for: platform))
        }
        try self.init(platform: platform, base: base, address: address, port: port)
    }
}

/// A server key slot as `keys address` shows it: the blob it holds, or blank (the device then
/// uses Particle's built-in server key and address).
public struct ServerKeySlotReading: Sendable {
    public var label: String
    public var cloudProtocol: CloudProtocol
    public var blob: ServerKeyBlob?

    public init(blob: ServerKeyBlob, label: String) {
        self.label = label
        self.blob = blob
        self.cloudProtocol = blob.cloudProtocol
    }

    public init(blank platform: Platform, label: String) {
        self.label = label
        self.cloudProtocol = platform.cloudProtocol
    }

    /// The server key slot as read from a device of `platform`, labelled with the platform.
    public init(slot bytes: [UInt8], platform: Platform) throws(ServerKeyBlobError) {
        do throws(ServerKeyBlobError) {
            let blob = try ServerKeyBlob(decoding: bytes, cloudProtocol: platform.cloudProtocol, slot: platform.serverKeySlot)
            self.init(blob: blob, label: platform.name)
        } catch {
            guard error == .blank else { throw error }
            self.init(blank: platform, label: platform.name)
        }
    }

    /// A file: a dump of the DCT (both protocols' slots, unless `platform` names one) or a blob,
    /// whose size says its platform's kind unless `platform` is given.
    public static func readings(ofFile bytes: [UInt8], platform: Platform?) throws -> [ServerKeySlotReading] {
        guard bytes.count >= DCTLayout.deviceID.offset else {
            let platform = try platform ?? Self.platform(forBlobSize: bytes.count)
            let blob = try ServerKeyBlob(decoding: bytes, cloudProtocol: platform.cloudProtocol, slot: platform.serverKeySlot)
            return [ServerKeySlotReading(blob: blob, label: platform.cloudProtocol.rawValue.uppercased())]
        }
        var readings: [ServerKeySlotReading] = []
        for candidate in platform.map({ [$0] }) ?? [Platform.photon, Platform.boron] {
            let label = platform == nil ? "\(candidate.cloudProtocol.rawValue.uppercased()) slot" : candidate.name
            do throws(ServerKeyBlobError) {
                readings.append(ServerKeySlotReading(blob: try ServerKeyBlob(dct: bytes, platform: candidate), label: label))
            } catch {
                // Without a platform named, a blank slot (the other protocol's) is a reading, not an error.
                guard error == .blank, platform == nil else { throw error }
                readings.append(ServerKeySlotReading(blank: candidate, label: label))
            }
        }
        return readings
    }

    /// The platform whose server key slot is `size` bytes (a Photon for TCP, a Boron for UDP).
    static func platform(forBlobSize size: Int) throws(ServerKeyFileError) -> Platform {
        switch size {
        case Platform.photon.serverKeySlot.slot.size: .photon
        case Platform.boron.serverKeySlot.slot.size: .boron
        case Platform.core.serverKeySlot.slot.size: .core
        default: throw .unknownSize(size)
        }
    }
}

/// A file given as a server key blob or DCT dump that is neither.
public enum ServerKeyFileError: Error, Sendable, Equatable, CustomStringConvertible, ClassifiedError {
    case unknownSize(Int)

    public var description: String {
        switch self {
        case .unknownSize(let size):
            "\(size) bytes is neither a server key blob (512 TCP, 320 UDP, 2048 Core) nor a DCT dump (16384)"
        }
    }

    public var failureClass: FailureClass { .badInput }
}
