import Custody
import LocalFiles
import Age
import Escrow
import Registry

/// What a restore needs besides the device: the RMA identity files, the bench's name (default
/// KEYLINE_STATION or the host name), a mounted store copy to read from, devices at once.
public struct RestoreSettings: Sendable {
    public var identityFiles: [String]
    public var station: String?
    public var storeOverride: String?
    public var concurrency: Int
    /// Custodians' shares of the escrow epoch instead of (or besides) identity files.
    public var shares: RestoreShares?

    public init(identityFiles: [String], station: String? = nil, storeOverride: String? = nil, concurrency: Int = 4,
                shares: RestoreShares? = nil) {
        self.identityFiles = identityFiles
        self.station = station
        self.storeOverride = storeOverride
        self.concurrency = concurrency
        self.shares = shares
    }

    /// The identity files read (none needed when shares are given).
    func readIdentities() async throws -> [X25519Identity] {
        let files = identityFiles
        if files.isEmpty, shares != nil { return [] }
        return try await offPool { try EscrowKeyFiles.identities(files) }
    }
}

/// One row of a batch and how it ended.
public struct RestoreResult: Sendable {
    public var request: RestoreRequest
    public var outcome: Result<RestoreReport, any Error>
}

/// `keyline restore` at a bench: the identities read, the registry checked before any device is
/// touched (current schema, a login bound to this bench), then one device or a CSV's tray restored.
public enum RestoreSession {
    /// Restores one device; its refusal or failure is thrown.
    public static func restore(_ request: RestoreRequest, settings: RestoreSettings, bus: BenchBus) async throws -> RestoreReport {
        let identities = try await settings.readIdentities()
        return try await withRestorer(identities: identities, settings: settings, bus: bus) { restorer in
            try await restorer.restore(request)
        } restorations: { report in [report.restorationID] }
    }

    /// Restores the devices of a batch CSV, `settings.concurrency` at a time; one result per row,
    /// in the CSV's order (a device that fails does not stop the others).
    public static func restore(batch path: String, product: String?, settings: RestoreSettings,
                               bus: BenchBus) async throws -> [RestoreResult] {
        let identities = try await settings.readIdentities()
        let requests = try await offPool { try RestoreBatch.parse(path: path, product: product) }
        return try await withRestorer(identities: identities, settings: settings, bus: bus) { restorer in
            await restoreAll(requests, with: restorer, concurrency: settings.concurrency)
        } restorations: { results in results.compactMap { try? $0.outcome.get().restorationID } }
    }

    private static func withRestorer<T>(identities: [X25519Identity], settings: RestoreSettings, bus: BenchBus,
                                        _ body: (KeyRestore) async throws -> T,
                                        restorations: (T) -> [Int64]) async throws -> T {
        let station = BenchStation(settings.station)
        // A login bound to another bench would have its restoration row refused after the device
        // was written: refused here, before any device is touched.
        let registry = try await station.registry(action: "restore keys", connections: min(max(settings.concurrency, 1), 8))
        // Shares are combined and checked, and the recovery recorded, before any device is touched.
        let custody = try await settings.shares?.recover(registry, station: station.name)
        let bench = await bus.devices()
        defer { bench.stop() }
        let result = try await body(KeyRestore(registry: registry, identities: identities + (custody.map { [$0.0.identity] } ?? []),
                                               devices: bench, station: station.name, storeOverride: settings.storeOverride))
        if let ceremony = custody?.1 { try await RestoreShares.link(restorations(result), to: ceremony, registry: registry) }
        return result
    }

    /// Bounded parallel restores, results in the requests' order.
    static func restoreAll(_ requests: [RestoreRequest], with restorer: KeyRestore, concurrency: Int) async -> [RestoreResult] {
        await concurrentMap(requests, width: concurrency) { request in
            do { return RestoreResult(request: request, outcome: .success(try await restorer.restore(request))) } catch {
                return RestoreResult(request: request, outcome: .failure(error))
            }
        }
    }
}
