import DeviceKeys

/// The server key region of the DCT as `particle keys server` writes it (particle-cli-keys.md §4):
/// the server's SubjectPublicKeyInfo DER, 0xFF fill, a `ServerAddress` at +384 (TCP, 512 bytes at
/// DCT 2082) or +192 (UDP, 320 bytes at DCT 3298), port big-endian at address + 66.
public struct ServerKeyBlob: Sendable, Equatable {
    public let cloudProtocol: CloudProtocol
    /// Exactly the slot size (512 TCP, 320 UDP; 2048 on the Core).
    public let bytes: [UInt8]
    public let serverKey: DevicePublicKey
    /// nil when no address is stored: the device uses its built-in default.
    public let address: ServerAddress?
    /// nil when the stored port is 0xFFFF (or 0): the device uses the protocol default.
    public let port: UInt16?

    public var effectivePort: UInt16 { port ?? cloudProtocol.defaultPort }

    /// `udp://$id.udp.particle.io:5684`, as `particle keys address` prints it. With no stored
    /// address it shows the CLI's fallback host (device.spark.io / udp.particle.io).
    public var url: String {
        let host = address?.host ?? (cloudProtocol == .tcp ? "device.spark.io" : "udp.particle.io")
        return "\(cloudProtocol.rawValue)://\(host):\(effectivePort)"
    }

    /// What the new blob starts from.
    public enum Base: Sendable {
        /// A bare server key: the blob is the key DER followed by 0xFF.
        case key(DevicePublicKey)
        /// A full-size blob (such as Particle's `ec.pub.der`): kept byte for byte except where the
        /// new address and port are written, exactly as particle-cli does with a full-size file.
        case blob([UInt8])
    }

    /// Builds a blob for `slot`, writing `address` and `port` when given.
    public init(cloudProtocol: CloudProtocol, slot: ServerKeySlot, base: Base, address: ServerAddress?, port: UInt16?) throws(ServerKeyBlobError) {
        var bytes: [UInt8]
        switch base {
        case .key(let key):
            try Self.check(key, for: cloudProtocol)
            guard key.spkiDER.count <= slot.addressOffset else {
                throw .keyTooLarge(keyLength: key.spkiDER.count, room: slot.addressOffset, cloudProtocol: cloudProtocol)
            }
            bytes = key.spkiDER + [UInt8](repeating: 0xFF, count: slot.slot.size - key.spkiDER.count)
        case .blob(let blob):
            bytes = try ServerKeyBlob(decoding: blob, cloudProtocol: cloudProtocol, slot: slot).bytes
        }
        if let address {
            let encoded = address.encoded
            bytes.replaceSubrange(slot.addressOffset..<(slot.addressOffset + encoded.count), with: encoded)
        }
        if let port {
            guard port != 0, port != 0xFFFF else { throw .invalidPort(port) }
            bytes[slot.portOffset] = UInt8(port >> 8)
            bytes[slot.portOffset + 1] = UInt8(port & 0xFF)
        }
        self = try ServerKeyBlob(decoding: bytes, cloudProtocol: cloudProtocol, slot: slot)
    }

    /// Builds a blob for a platform's server key slot.
    public init(platform: Platform, base: Base, address: ServerAddress?, port: UInt16?) throws(ServerKeyBlobError) {
        try self.init(cloudProtocol: platform.cloudProtocol, slot: platform.serverKeySlot, base: base, address: address, port: port)
    }

    /// Decodes a blob of exactly the slot's size.
    public init(decoding bytes: [UInt8], cloudProtocol: CloudProtocol, slot: ServerKeySlot) throws(ServerKeyBlobError) {
        guard bytes.count == slot.slot.size else {
            throw .wrongSize(actual: bytes.count, expected: slot.slot.size, cloudProtocol: cloudProtocol)
        }
        guard bytes[0] != 0xFF else { throw .blank }
        let keyRegion = Array(bytes.prefix(slot.addressOffset))
        let key: DevicePublicKey
        do {
            let parsed = try KeyFile.parse(keyRegion)
            guard case .publicKey(let publicKey) = parsed.material, parsed.encoding == .spki else {
                throw ServerKeyBlobError.malformedKey("it holds a private key or a non-SPKI structure")
            }
            key = publicKey
        } catch let error as ServerKeyBlobError {
            throw error
        } catch let error as DeviceKeyError {
            if case .truncated = error { throw .keyTooLarge(keyLength: nil, room: slot.addressOffset, cloudProtocol: cloudProtocol) }
            throw .malformedKey(error.description)
        } catch {
            throw .malformedKey("\(error)")
        }
        try Self.check(key, for: cloudProtocol)
        let address: ServerAddress?
        do {
            address = try ServerAddress.decode(bytes[slot.addressOffset..<(slot.addressOffset + ServerAddress.portOffset + 2)])
        } catch {
            throw .address(error)
        }
        let port = UInt16(bytes[slot.portOffset]) << 8 | UInt16(bytes[slot.portOffset + 1])
        self.cloudProtocol = cloudProtocol
        self.bytes = bytes
        self.serverKey = key
        self.address = address
        // The connect code replaces 0 and 0xFFFF with the default (device-os-keys.md §1.4).
        self.port = port == 0 || port == 0xFFFF ? nil : port
    }

    /// Decodes a platform's server key blob out of a DCT dump (DFU alt 1 from address 0).
    public init(dct: [UInt8], platform: Platform) throws(ServerKeyBlobError) {
        let range = platform.serverKeySlot.slot.range
        guard dct.count >= range.upperBound else { throw .dctTooShort(actual: dct.count, needed: range.upperBound) }
        try self.init(decoding: Array(dct[range]), cloudProtocol: platform.cloudProtocol, slot: platform.serverKeySlot)
    }

    /// TCP devices talk to an RSA server key, UDP devices to a P-256 one.
    static func check(_ key: DevicePublicKey, for cloudProtocol: CloudProtocol) throws(ServerKeyBlobError) {
        guard key.algorithm == cloudProtocol.keyAlgorithm else {
            throw .wrongKeyAlgorithm(found: key.algorithm, cloudProtocol: cloudProtocol)
        }
    }
}

public enum ServerKeyBlobError: Error, Sendable, Equatable, CustomStringConvertible {
    case wrongSize(actual: Int, expected: Int, cloudProtocol: CloudProtocol)
    case blank
    case malformedKey(String)
    case wrongKeyAlgorithm(found: KeyAlgorithm, cloudProtocol: CloudProtocol)
    case keyTooLarge(keyLength: Int?, room: Int, cloudProtocol: CloudProtocol)
    case invalidPort(UInt16)
    case address(ServerAddressError)
    case dctTooShort(actual: Int, needed: Int)

    public var description: String {
        switch self {
        case let .wrongSize(actual, expected, proto):
            "a \(proto.rawValue.uppercased()) server key blob is \(expected) bytes, this is \(actual)"
        case .blank:
            "the server key slot is blank (0xFF): the device uses its built-in Particle server key"
        case let .malformedKey(reason):
            "the server key in the blob is not a valid public key: \(reason)"
        case let .wrongKeyAlgorithm(found, proto):
            "a \(proto.rawValue.uppercased()) device needs an \(proto.keyAlgorithm.displayName) server key, this one is \(found.displayName)"
        case let .keyTooLarge(length, room, proto):
            "the server key\(length.map { " (\($0) bytes)" } ?? "") does not fit before the address at offset \(room) of the \(proto.rawValue.uppercased()) blob; use the server's \(proto == .tcp ? "RSA-2048" : "P-256") key"
        case let .invalidPort(port):
            "port \(port) cannot be stored (0 and 65535 mean 'default'); omit --port to use the default"
        case let .address(error):
            error.description
        case let .dctTooShort(actual, needed):
            "the DCT dump is \(actual) bytes; it must reach offset \(needed)"
        }
    }
}
