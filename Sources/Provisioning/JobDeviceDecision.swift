import Registry

/// `keyline job abandon|reopen JOB DEVICE --reason …`: an operator's audited call on one device of a
/// job (`RegistryDatabase.abandonJobDevice`). It takes the job's lease first, like a run: a job
/// being run right now is refused (`ProvisioningError.jobInUse`), and a run that held the job
/// before has its later writes fenced out.
public enum JobDeviceDecision {
    public enum Action: String, Sendable {
        case abandon
        case reopen
    }

    /// Connects (DATABASE_URL, libpq's PG* variables, or the local cluster) and decides.
    public static func run(_ action: Action, jobID: Int64, deviceID: String, reason: String,
                           station: String?) async throws -> JobDevice {
        let registry = try await RegistryDatabase.connect(.fromEnvironment())
        try await registry.requireCurrentSchema()
        return try await run(action, jobID: jobID, deviceID: deviceID, reason: reason,
                             station: StationName.resolve(station), registry: registry)
    }

    public static func run(_ action: Action, jobID: Int64, deviceID: String, reason: String, station: String,
                           registry: RegistryDatabase) async throws -> JobDevice {
        guard try await registry.job(id: jobID) != nil else { throw ProvisioningError.unknownJob(jobID) }
        guard let lease = try await registry.leaseJob(jobID) else { throw ProvisioningError.jobInUse(jobID) }
        do {
            let fenced = registry.fenced(by: lease)
            let device = switch action {
            case .abandon: try await fenced.abandonJobDevice(jobID: jobID, deviceID: deviceID, reason: reason, station: station)
            case .reopen: try await fenced.reopenJobDevice(jobID: jobID, deviceID: deviceID, reason: reason, station: station)
            }
            await lease.release()
            return device
        } catch {
            await lease.release()
            throw error
        }
    }
}
