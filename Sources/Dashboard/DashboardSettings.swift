import Foundation

/// Where the dashboard listens and who may look (`keyline dashboard --listen … --token-file …`).
public struct DashboardSettings: Sendable {
    public var host: String
    public var port: Int
    /// Required of every request when set (always, off loopback).
    public var token: AccessToken?

    /// Parses `HOST:PORT` (`[::1]:8080` for IPv6; port 0: any free port, printed once listening);
    /// a non-loopback host needs a token.
    public init(listen: String, token: AccessToken?) throws(DashboardError) {
        let (host, port) = try Self.parse(listen)
        if !Self.isLoopback(host) && token == nil { throw .tokenRequired(address: listen) }
        self.host = host
        self.port = port
        self.token = token
    }

    static func parse(_ listen: String) throws(DashboardError) -> (String, Int) {
        var host: Substring
        var portText: Substring
        if listen.hasPrefix("[") {
            guard let close = listen.firstIndex(of: "]"), listen[listen.index(after: close)...].hasPrefix(":") else {
                throw .badListenAddress(listen)
            }
            host = listen[listen.index(after: listen.startIndex)..<close]
            portText = listen[listen.index(close, offsetBy: 2)...]
        } else {
            guard let colon = listen.lastIndex(of: ":") else { throw .badListenAddress(listen) }
            host = listen[..<colon]
            portText = listen[listen.index(after: colon)...]
        }
        guard !host.isEmpty, !host.contains(where: { $0.isWhitespace }), portText.allSatisfy(\.isASCII),
              let port = Int(portText), (0...65_535).contains(port) else {
            throw .badListenAddress(listen)
        }
        return (String(host), port)
    }

    /// 127.0.0.0/8, ::1 and `localhost`: only this machine can connect.
    static func isLoopback(_ host: String) -> Bool {
        if host == "localhost" || host == "::1" { return true }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
    }
}

/// The shared secret viewers present off loopback: `Authorization: Bearer TOKEN`, or the `token`
/// cookie the `/login` form sets. Compared in constant time; never printed or logged.
public struct AccessToken: Sendable, CustomStringConvertible {
    let bytes: [UInt8]

    /// Tokens are 16 to 512 characters of `A-Z a-z 0-9 . _ ~ + / = -` (valid in a header and a cookie).
    public init(_ text: String) throws(DashboardError) {
        guard (16...512).contains(text.utf8.count),
              text.utf8.allSatisfy({ Self.allowed.contains($0) }) else {
            throw .badTokenFile(path: "-", problem: "a token is 16 to 512 characters of A-Z a-z 0-9 . _ ~ + / = -")
        }
        bytes = Array(text.utf8)
    }

    /// Reads the token from `path`, which must be a regular file only its owner can read (0600 or 0400).
    public static func read(path: String) throws(DashboardError) -> AccessToken {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            throw .badTokenFile(path: path, problem: String(cString: strerror(errno)))
        }
        guard (info.st_mode & mode_t(S_IFMT)) == mode_t(S_IFREG) else { throw .badTokenFile(path: path, problem: "not a regular file") }
        guard info.st_mode & 0o077 == 0 else {
            throw .badTokenFile(path: path, problem: String(format: "mode %03o lets others read it; chmod 600 it", info.st_mode & 0o777))
        }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw .badTokenFile(path: path, problem: "cannot be read")
        }
        guard data.count <= 4096, let text = String(data: data, encoding: .utf8) else {
            throw .badTokenFile(path: path, problem: "is not a short UTF-8 text file")
        }
        do {
            return try AccessToken(text.trimmingCharacters(in: .whitespacesAndNewlines))
        } catch {
            throw .badTokenFile(path: path, problem: "a token is 16 to 512 characters of A-Z a-z 0-9 . _ ~ + / = -")
        }
    }

    /// Whether `presented` is the token, in time that does not depend on where they differ.
    public func matches(_ presented: Substring?) -> Bool {
        guard let presented else { return false }
        let other = Array(presented.utf8)
        var difference = UInt8(other.count == bytes.count ? 0 : 1)
        for index in bytes.indices {
            difference |= bytes[index] ^ (index < other.count ? other[index] : 0)
        }
        return difference == 0
    }

    public var description: String { "<token>" }

    private static let allowed: Set<UInt8> = Set(Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~+/=-".utf8))
}
