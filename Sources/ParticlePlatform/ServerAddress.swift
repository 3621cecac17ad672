/// Device OS `ServerAddress` as stored in flash (hal/inc/ota_flash_hal.h, parse_server_address.h;
/// device-os-keys.md §1.4): `addr_type` (0 IP, 1 domain, 0xFF invalid), `length`, the address,
/// and the port big-endian at +66.
public enum ServerAddress: Sendable, Hashable, CustomStringConvertible {
    case ipv4(UInt8, UInt8, UInt8, UInt8)
    /// Printable ASCII, at most 63 characters; `$id` is expanded by the device.
    case domain(String)

    static let typeIP: UInt8 = 0
    static let typeDomain: UInt8 = 1
    static let portOffset = 66
    /// The device accepts domains of at most 63 characters (`domain[64]` with a terminator).
    public static let maximumDomainLength = 63

    /// Parses `--host`: a dotted IPv4 address (particle-cli's `/^[0-9.]*$/` test) or a domain name.
    public init(host: String) throws(ServerAddressError) {
        if !host.isEmpty, host.allSatisfy({ $0 == "." || $0.isASCII && $0.isNumber }) {
            let parts = host.split(separator: ".", omittingEmptySubsequences: false)
            let octets = parts.compactMap { UInt8($0) }
            guard parts.count == 4, octets.count == 4 else { throw .invalidIPv4(host) }
            // parseServerAddressData rejects 0.0.0.0 and 255.255.255.255.
            guard octets != [0, 0, 0, 0], octets != [255, 255, 255, 255] else { throw .invalidIPv4(host) }
            self = .ipv4(octets[0], octets[1], octets[2], octets[3])
            return
        }
        guard !host.isEmpty else { throw .emptyHost }
        guard host.utf8.count <= Self.maximumDomainLength else { throw .hostTooLong(host.utf8.count) }
        guard host.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) else { throw .nonPrintableHost }
        self = .domain(host)
    }

    public var host: String {
        switch self {
        case let .ipv4(a, b, c, d): "\(a).\(b).\(c).\(d)"
        case let .domain(name): name
        }
    }

    public var description: String { host }

    /// The type-length-value bytes written at the address offset.
    var encoded: [UInt8] {
        switch self {
        case let .ipv4(a, b, c, d): [Self.typeIP, 4, a, b, c, d]
        case let .domain(name): [Self.typeDomain, UInt8(name.utf8.count)] + Array(name.utf8)
        }
    }

    /// Reads the address at the start of `bytes` (at least 68 bytes). nil: no address stored
    /// (type 0xFF or length 0) — the device uses its default.
    static func decode(_ bytes: ArraySlice<UInt8>) throws(ServerAddressError) -> ServerAddress? {
        let base = bytes.startIndex
        let type = bytes[base]
        let length = Int(bytes[base + 1])
        if type == 0xFF || length == 0 { return nil }
        switch type {
        case typeIP:
            guard length == 4 else { throw .malformed("an IPv4 address with length \(length)") }
            return .ipv4(bytes[base + 2], bytes[base + 3], bytes[base + 4], bytes[base + 5])
        case typeDomain:
            guard length <= maximumDomainLength else { throw .malformed("a domain of length \(length), over the device's 63") }
            let name = bytes[(base + 2)..<(base + 2 + length)]
            guard name.allSatisfy({ (0x21...0x7E).contains($0) }) else { throw .malformed("a domain with non-printable bytes") }
            return .domain(String(decoding: name, as: UTF8.self))
        default:
            throw .malformed("address type \(type) (0 = IP, 1 = domain)")
        }
    }
}

public enum ServerAddressError: Error, Sendable, Equatable, CustomStringConvertible {
    case emptyHost
    case invalidIPv4(String)
    case hostTooLong(Int)
    case nonPrintableHost
    case malformed(String)

    public var description: String {
        switch self {
        case .emptyHost: "the server host is empty"
        case .invalidIPv4(let host): "'\(host)' is not a usable IPv4 address (four numbers 0–255; not 0.0.0.0 or 255.255.255.255)"
        case .hostTooLong(let length): "the server host is \(length) characters; a device accepts at most \(ServerAddress.maximumDomainLength)"
        case .nonPrintableHost: "the server host must be printable ASCII without spaces"
        case .malformed(let what): "the stored server address is malformed: \(what)"
        }
    }
}
