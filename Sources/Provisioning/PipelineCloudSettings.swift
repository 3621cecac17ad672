import ParticleCloud

/// The pipeline's `cloud:` section: which registered keys the Particle cloud must learn, and how
/// the station sends them (issue 20). Without the section every key is still queued (the outbox
/// forgets nothing) and sent when a token is in the environment; otherwise `keyline cloud push`.
public struct CloudSettings: Sendable, Hashable {
    /// Which keys get an upload queued with their registration.
    public enum Upload: String, Sendable, Hashable, CaseIterable {
        /// Every key the line registers (default). A key the device already had is sent too: after
        /// a crash keyline cannot tell a key it wrote but had not recorded from a factory key, and
        /// the cloud takes a key it already holds as the same key again, so sending is the safe side.
        case all
        /// Only a host-mode line's keys (the keys keyline generates); a device-mode line keeps the
        /// factory key the cloud already knows and sends nothing (fewer API calls on a large line).
        case generated
        /// Nothing (a line that registers keys for a private cloud). `keyline audit` still reports it.
        case none
    }

    /// Whether the pipeline has a `cloud:` section (then a token is required before any device).
    public var configured = false
    public var upload: Upload = .all
    /// The API base; PARTICLE_API_URL wins.
    public var apiURL: String?
    /// A 0600 file holding the token; PARTICLE_ACCESS_TOKEN is used when absent.
    public var tokenFile: String?
    /// Uploads in flight at once while the line runs.
    public var inFlight = 4
    /// Add each device to the product before sending its key.
    public var joinProduct = true
    /// How long the job waits at its end for its uploads to be accepted.
    public var drainTimeout: Duration = .seconds(60)
    /// Whether the job fails (exit 75 / 65) when its uploads are not all accepted at its end. Off by
    /// default: a device is done once its key is escrowed and registered, since the upload is durable
    /// in the outbox and `keyline cloud push` finishes it; on for lines that ship devices the moment
    /// they come off the station.
    public var requireAccepted = false

    public init() {}

    /// Whether a registration in a line of `keyMode` queues an upload.
    public func queues(for keyMode: KeyMode) -> Bool {
        switch upload {
        case .all: true
        case .generated: keyMode == .host
        case .none: false
        }
    }
}

extension PipelineReading {
    mutating func readCloud(_ field: PipelineYAML.Field?) -> CloudSettings? {
        var settings = CloudSettings()
        guard let field else { return settings }
        settings.configured = true
        guard let keys = yaml.mapping(field.node, field.path, known: [
            "upload", "api_url", "token_file", "in_flight", "product_membership", "drain_timeout", "require_accepted",
        ]) else { return nil }
        var ok = true
        if let f = keys["upload"], let text = yaml.string(f) {
            if let upload = CloudSettings.Upload(rawValue: text) { settings.upload = upload } else {
                yaml.report(f.node, f.path, "unknown upload choice '\(text)'",
                            advice: "use all (every registered key), generated (host-mode keys only) or none")
                ok = false
            }
        }
        if let f = keys["api_url"], let text = yaml.string(f) {
            do { _ = try ParticleAPIBase(text); settings.apiURL = text } catch {
                yaml.report(f.node, f.path, "\(error)", advice: "give https://api.particle.io or a loopback http URL")
                ok = false
            }
        }
        if let f = keys["token_file"], let text = yaml.string(f) { settings.tokenFile = resolve(text) }
        if let f = keys["in_flight"] {
            if let n = yaml.integer(f, in: 1...64, advice: "uploads in flight at once: 1…64, e.g. 4") { settings.inFlight = n } else { ok = false }
        }
        if let f = keys["product_membership"] {
            if let flag = readFlag(f) { settings.joinProduct = flag } else { ok = false }
        }
        if let f = keys["require_accepted"] {
            if let flag = readFlag(f) { settings.requireAccepted = flag } else { ok = false }
        }
        if let f = keys["drain_timeout"] {
            if let d = yaml.duration(f, maximum: .seconds(3600)) { settings.drainTimeout = d } else { ok = false }
        }
        return ok ? settings : nil
    }

    mutating func readFlag(_ field: PipelineYAML.Field) -> Bool? {
        switch yaml.string(field) {
        case "true"?, "yes"?, "on"?: return true
        case "false"?, "no"?, "off"?: return false
        default:
            yaml.report(field.node, field.path, "expected true or false", advice: "write true or false")
            return nil
        }
    }
}
