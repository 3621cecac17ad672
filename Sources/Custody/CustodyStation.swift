import Registry

/// Where a ceremony runs, as the registry records it: the officer's or bench's name (given, else
/// KEYLINE_STATION, else the host name), and a registry with the current schema and a login bound
/// to it (an RMA/officer login: the database refuses ceremonies from a station login).
public struct CustodyStation: Sendable {
    public let name: String

    public init(_ given: String?) {
        name = StationName.resolve(given)
    }

    public func registry(action: String, bound: Bool = true) async throws -> RegistryDatabase {
        let registry = try await RegistryDatabase.connect(.fromEnvironment(), connections: 8)
        try await registry.requireCurrentSchema()
        if bound { try await registry.requireBoundStation(name, action: action) }
        return registry
    }
}
