import Foundation

/// Where the Particle Cloud API is: `PARTICLE_API_URL`, the pipeline's `cloud.api_url`, or
/// Particle's own (particle-cli's default, reference/particle-cli-keys.md §3). The token goes
/// only over TLS (verified: AsyncHTTPClient's default), or in plain HTTP to this host itself
/// (the simulated cloud, a local proxy): never in clear text over a network.
public struct ParticleAPIBase: Sendable, Hashable, CustomStringConvertible {
    public static let particle = try! ParticleAPIBase("https://api.particle.io")

    /// Scheme, host and port, and a path prefix without a trailing slash ("" or "/api").
    public let origin: String
    public let path: String

    public init(_ text: String) throws(ParticleCloudError) {
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
              let host = components.host, !host.isEmpty else {
            throw .apiURL(text, problem: "is not a URL such as https://api.particle.io")
        }
        guard components.user == nil, components.password == nil, components.query == nil, components.fragment == nil else {
            // The URL itself is not repeated: it may hold a password.
            throw .apiURL("\(scheme)://\(host)/…", problem: "must not hold a user, password, query or fragment")
        }
        switch scheme {
        case "https": break
        case "http":
            guard Self.isLoopback(host) else {
                throw .apiURL(text, problem: "plain http would send the access token in clear text; use https "
                              + "(plain http is accepted only for a loopback address such as 127.0.0.1)")
            }
        default:
            throw .apiURL(text, problem: "scheme \(scheme) is not http or https")
        }
        let port = components.port.map { ":\($0)" } ?? ""
        let bracketed = host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host
        origin = "\(scheme)://\(bracketed)\(port)"
        var prefix = components.percentEncodedPath
        while prefix.hasSuffix("/") { prefix.removeLast() }
        path = prefix
    }

    /// The API base from `PARTICLE_API_URL`, else the pipeline's value, else Particle's.
    public static func resolve(pipeline: String?,
                               environment: [String: String] = ProcessInfo.processInfo.environment) throws(ParticleCloudError) -> ParticleAPIBase {
        if let value = environment["PARTICLE_API_URL"], !value.isEmpty { return try ParticleAPIBase(value) }
        if let pipeline { return try ParticleAPIBase(pipeline) }
        return .particle
    }

    public var description: String { origin + path }

    func url(_ endpoint: String) -> String { origin + path + endpoint }

    /// 127.0.0.0/8, ::1 and localhost.
    static func isLoopback(_ host: String) -> Bool {
        let bare = host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")).lowercased()
        if bare == "localhost" || bare == "::1" { return true }
        let parts = bare.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts.allSatisfy({ UInt8($0) != nil }) else { return false }
        return parts[0] == "127"
    }
}
