import FailurePolicy
import Foundation
import LocalFiles

/// A Particle access token. It is sent in one header and nowhere else: its description is
/// redacted, so it cannot reach a log, an error, an event or the terminal by accident.
public struct ParticleAccessToken: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    let secret: String

    public init(_ secret: String) throws(ParticleCloudError) {
        let trimmed = secret.trimmingCharacters(in: .whitespacesAndNewlines)
        // A token is a single header value: refuse anything that could split or smuggle a header.
        guard !trimmed.isEmpty, trimmed.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { throw .noToken }
        self.secret = trimmed
    }

    public var description: String { "<Particle access token>" }
    public var debugDescription: String { description }

    var authorization: String { "Bearer \(secret)" }

    /// PARTICLE_ACCESS_TOKEN, else the token file, else `.noToken`. The file must be a regular file
    /// readable by its owner only (mode 0600 or 0400), as ssh treats a private key.
    public static func resolve(tokenFile: String?,
                               environment: [String: String] = ProcessInfo.processInfo.environment) async throws -> ParticleAccessToken {
        if let path = tokenFile ?? environment["PARTICLE_TOKEN_FILE"].flatMap({ $0.isEmpty ? nil : $0 }) {
            return try await offPool { try Self.read(path) }
        }
        if let value = environment["PARTICLE_ACCESS_TOKEN"], !value.isEmpty {
            return try ParticleAccessToken(value)
        }
        throw ParticleCloudError.noToken
    }

    /// Reads a token file (blocking: call off the cooperative pool).
    public static func read(_ path: String) throws -> ParticleAccessToken {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw ParticleCloudError.tokenFile(path: path, problem: "cannot be read (\(String(cString: strerror(errno))))")
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw ParticleCloudError.tokenFile(path: path, problem: "is not a regular file")
        }
        guard info.st_mode & 0o077 == 0 else {
            throw ParticleCloudError.tokenFile(
                path: path, problem: "is readable by others (mode \(String(info.st_mode & 0o777, radix: 8))); "
                    + "run `chmod 600 \(path)`, and replace the token if others may have read it")
        }
        let bytes: [UInt8]
        do {
            bytes = try InputFile.read(path, limit: 4096, what: "a Particle token file", pipes: false)
        } catch {
            throw ParticleCloudError.tokenFile(path: path, problem: error.reason)
        }
        do {
            return try ParticleAccessToken(String(decoding: bytes, as: UTF8.self))
        } catch {
            throw ParticleCloudError.tokenFile(path: path, problem: "holds no token (one line of printable text)")
        }
    }
}
