import DeviceBus
import ParticleDevice
import ParticlePlatform

/// How a bench command reaches devices: the bus it opens for each use (the station's USB; the
/// tests' simulator) and how long it waits for a device to be attached or to come back in DFU
/// mode. Each use watches the bus only for as long as it needs it.
public struct BenchBus: Sendable {
    public let open: @Sendable () async -> any DeviceBus
    public let timeout: Duration

    public init(timeout: Duration = .seconds(20), open: @escaping @Sendable () async -> any DeviceBus) {
        self.open = open
        self.timeout = timeout
    }

    /// `seconds` as the command line gives it, rounded up to the millisecond.
    public init(timeoutSeconds seconds: Double, open: @escaping @Sendable () async -> any DeviceBus) {
        self.init(timeout: .milliseconds(Int((seconds * 1000).rounded(.up))), open: open)
    }

    /// The bus, watched; the caller stops it.
    public func devices() async -> BenchDevices {
        BenchDevices(bus: await open(), timeout: timeout)
    }

    /// `deviceID` or the only device attached, with its platform (from its USB ID), without
    /// opening it; nil when no ID is given and nothing is attached.
    public func chooseAttached(_ deviceID: String?) async throws -> (deviceID: String, platform: Platform)? {
        let bench = await devices()
        defer { bench.stop() }
        do {
            return try await bench.choose(deviceID)
        } catch BenchError.noDevices {
            return nil
        }
    }

    /// Chooses the device (`deviceID` or the only one attached), opens it in DFU mode and runs
    /// `body` with it; the handle is given back after, whatever `body` does.
    public func withDevice<T>(_ deviceID: String?, _ body: (ParticleDFUDevice) async throws -> T) async throws -> T {
        let bench = await devices()
        defer { bench.stop() }
        let (id, _) = try await bench.choose(deviceID)
        let opened = try await bench.openDFU(id)
        do {
            let result = try await body(opened)
            await BenchDevices.close(opened)
            return result
        } catch {
            await BenchDevices.close(opened)
            throw error
        }
    }
}
