import Age
import DeviceBus
import Foundation
import LocalFiles
import ParticleCloud
import Registry

/// `keyline station check PIPELINE` (issue 23): the checks a shift lead runs before the line
/// starts, each on its own line, each saying what it found and what to do — so a line does not find
/// a missing udev rule, an unbound login, a store that lost write-once, a stale token or a drifting
/// clock on its first device. Every check runs even when another fails; a check that needs one that
/// failed (the clock needs the registry) is skipped, saying why. Nothing here touches a device
/// beyond opening and closing it.
public struct StationPreflight: Sendable {
    public let request: StationCheckRequest
    /// The station's USB bus (libusb) or a simulated one.
    public let bus: any DeviceBus
    /// Why the bus cannot be used at all (libusb failed to initialise), from the command.
    public let busUnavailableReason: String?
    /// How the registry is reached: by default the pipeline's `database:` or libpq's environment
    /// (a connection of the check's own, closed at its end); tests hand in theirs.
    let connect: @Sendable (PipelineDefinition) async throws -> RegistryDatabase
    private let ownsConnection: Bool

    public init(request: StationCheckRequest, bus: any DeviceBus, busUnavailableReason: String? = nil,
                connect: (@Sendable (PipelineDefinition) async throws -> RegistryDatabase)? = nil) {
        self.request = request
        self.bus = bus
        self.busUnavailableReason = busUnavailableReason
        ownsConnection = connect == nil
        self.connect = connect ?? { definition in
            let settings = definition.database.map { ConnectionSettings(connectionString: $0, source: .databaseURL) }
                ?? ConnectionSettings.fromEnvironment()
            return try await RegistryDatabase.connect(settings)
        }
    }

    public func run() async -> StationCheckReport {
        let definition: PipelineDefinition
        do {
            let (path, environment, overrides) = (request.pipeline, request.environment, request.overrides)
            definition = try await offPool { try PipelineLoader.load(path: path, environment: environment, overrides: overrides) }
        } catch {
            let usbCheck = await usb(ports: nil)
            let checks = pipelineFailed(error) + [usbCheck]
            let order = StationCheck.Name.allCases
            return StationCheckReport(station: request.overrides.station,
                                      checks: checks.sorted { order.firstIndex(of: $0.check)! < order.firstIndex(of: $1.check)! })
        }
        var checks = [StationCheck.pass(.pipeline, "\(definition.name): product \(definition.product.id), \(definition.platform.name), station \(definition.station)")]
        checks.append(await usb(ports: definition.ports))
        var registry: RegistryDatabase?
        do {
            registry = try await connect(definition)
        } catch {
            checks.append(.fail(.registry, "cannot reach the registry: \(error)",
                                hint: "check DATABASE_URL / PG* (or the pipeline's database:), the network and the server"))
        }
        if let registry { checks.append(await registryCheck(registry, station: definition.station)) }
        checks.append(await storeCheck(definition))
        checks.append(await recipients(definition, registry: registry))
        checks.append(await cloud(definition))
        checks.append(await clock(registry))
        if ownsConnection, let client = registry?.client as? PostgresConnection { await client.close() }
        return StationCheckReport(station: definition.station, checks: checks)
    }

    /// The pipeline did not load: its problems, and the recipients' own line when they are among them.
    private func pipelineFailed(_ error: any Error) -> [StationCheck] {
        let problems = (error as? PipelineValidationError)?.problems ?? []
        let recipientProblems = problems.filter { $0.keyPath.hasPrefix("escrow.recipients") }
        var checks = [StationCheck.fail(.pipeline, "\(error)", hint: "fix the pipeline (every problem is listed with its line)")]
        if !recipientProblems.isEmpty {
            checks.append(.fail(.recipients, recipientProblems.map { "\($0.message) (\($0.file):\($0.line))" }.joined(separator: "; "),
                                hint: "recipients are age1… public keys, one per line (`keyline escrow keygen` prints one)"))
        }
        for name in [StationCheck.Name.registry, .store, .recipients, .cloud, .clock]
        where !checks.contains(where: { $0.check == name }) {
            checks.append(.skip(name, "not checked: the pipeline did not load"))
        }
        return checks
    }

    // MARK: Recipients, cloud, clock

    /// The pipeline's recipients parsed when it loaded; with custody (schema 0012), the active
    /// epoch's recipient must parse and be one of them, or backups made now would not be under custody.
    func recipients(_ definition: PipelineDefinition, registry: RegistryDatabase?) async -> StationCheck {
        let recipients = definition.escrow.recipients
        var message = "\(recipients.count) age recipient(s) valid"
        guard let registry else { return .pass(.recipients, message + " (custody epochs not checked: no registry)") }
        let epochs: [EscrowEpoch]
        do {
            epochs = try await registry.epochs().filter { $0.status == .active }
        } catch {
            return .pass(.recipients, message + " (custody epochs not readable by this login: \(error))")
        }
        for epoch in epochs {
            guard let recipient = try? X25519Recipient(epoch.recipient) else {
                return .fail(.recipients, "the active custody epoch \(epoch.name)'s recipient does not parse",
                             hint: "an officer checks the epoch (`keyline custody status`)")
            }
            guard recipients.contains(recipient) else {
                return .fail(.recipients, "the pipeline's recipients do not include the active custody epoch \(epoch.name)'s recipient \(recipient)",
                             hint: "add \(recipient) to the recipients file, or backups made now are outside custody")
            }
            message += ", custody epoch \(epoch.name) included"
        }
        return .pass(.recipients, message)
    }

    /// A token the Particle cloud accepts, asked with particle-cli's `whoami` call (`GET /v1/user`),
    /// which changes nothing.
    func cloud(_ definition: PipelineDefinition) async -> StationCheck {
        let settings = definition.cloud
        guard settings.upload != .none else { return .skip(.cloud, "cloud.upload is none: this line sends no keys") }
        let api: ParticleAPIBase
        let token: ParticleAccessToken
        do {
            api = try ParticleAPIBase.resolve(pipeline: settings.apiURL, environment: request.environment)
            token = try await ParticleAccessToken.resolve(tokenFile: settings.tokenFile, environment: request.environment)
        } catch ParticleCloudError.noToken where !settings.configured {
            return .skip(.cloud, "no cloud: section and no PARTICLE_ACCESS_TOKEN: uploads stay queued for `keyline cloud push`")
        } catch {
            return .fail(.cloud, "\(error)", hint: "set PARTICLE_ACCESS_TOKEN or the pipeline's cloud.token_file (mode 0600)")
        }
        switch await ParticleCloudClient(api: api, token: token, requestTimeout: .seconds(15)).currentUser() {
        case .reply(let reply) where (200..<300).contains(reply.status):
            return .pass(.cloud, "the Particle cloud at \(api) accepts the token")
        case .reply(let reply) where reply.status == 401 || reply.status == 403:
            return .fail(.cloud, "the Particle cloud at \(api) refused the token (HTTP \(reply.status), \(reply.reason))",
                         hint: "create a new token (`particle token create`) and update PARTICLE_ACCESS_TOKEN or cloud.token_file")
        case .reply(let reply):
            return .fail(.cloud, "the Particle cloud at \(api) answered GET /v1/user with HTTP \(reply.status) (\(reply.reason))",
                         hint: "check the API URL (PARTICLE_API_URL or cloud.api_url) and try again")
        case .noReply(let problem):
            return .fail(.cloud, "\(problem) (\(api))", hint: "check the station's network and proxy settings")
        case .cancelled:
            return .fail(.cloud, "cancelled")
        }
    }

    /// The station's clock against the database's (`clock_timestamp()`), taking the middle of the
    /// round trip as the moment the database read its clock.
    func clock(_ registry: RegistryDatabase?) async -> StationCheck {
        guard let registry else { return .skip(.clock, "not checked: the registry is not reachable") }
        do {
            let before = Date()
            let database = try await registry.databaseClock()
            let after = Date()
            let station = before.addingTimeInterval(after.timeIntervalSince(before) / 2)
            let offset = station.timeIntervalSince(database)
            let tolerance = Double(request.clockTolerance.components.seconds)
                + Double(request.clockTolerance.components.attoseconds) / 1e18
            let described = String(format: "%+.3f s", offset)
            guard abs(offset) <= tolerance else {
                return .fail(.clock, "the station's clock is \(described) from the database's (tolerance \(Self.seconds(tolerance)))",
                             hint: "synchronise the station's clock (NTP: `timedatectl set-ntp true`, chrony) and the database server's")
            }
            return .pass(.clock, "the station's clock is \(described) from the database's (tolerance \(Self.seconds(tolerance)))")
        } catch {
            return .fail(.clock, "cannot read the database's clock: \(error)")
        }
    }

    static func seconds(_ value: Double) -> String { String(format: "%g s", value) }
}
