import Registry

/// The bench as the registry records it: its name (given, else KEYLINE_STATION, else the host
/// name, as a station's), and the registry checked before anything is escrowed or written.
struct BenchStation: Sendable {
    let name: String

    init(_ given: String?) {
        name = StationName.resolve(given)
    }

    /// The registry, with the current schema (an older one cannot record what a bench records) and
    /// a login bound to this bench: a row the database refused after the device was written, or
    /// after an object went into a write-once store, could not be taken back.
    func registry(action: String, connections: Int = 1) async throws -> RegistryDatabase {
        let registry = try await RegistryDatabase.connect(.fromEnvironment(), connections: connections)
        try await registry.requireCurrentSchema()
        try await registry.requireBoundStation(name, action: action)
        return registry
    }
}
