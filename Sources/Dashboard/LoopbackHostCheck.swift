import Hummingbird

/// Without a token the dashboard listens on loopback only, but a web page open on the same PC can
/// still reach it through DNS rebinding (its own host name made to resolve to 127.0.0.1). Such a
/// request carries that foreign name in `Host`, so only loopback names are answered.
struct LoopbackHostCheck: RouterMiddleware {
    typealias Context = BasicRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let host = request.head.authority, Self.isLoopback(host: host) else {
            return DashboardServer.text("this dashboard answers only requests addressed to localhost, 127.0.0.1 or [::1]",
                                        type: "text/plain; charset=utf-8", status: .misdirectedRequest)
        }
        return try await next(request, context)
    }

    /// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
    static func isLoopback(host authority: String) -> Bool {
        let name: Substring
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return false }
            name = authority[authority.index(after: authority.startIndex)..<close]
            let rest = authority[authority.index(after: close)...]
            guard rest.isEmpty || (rest.hasPrefix(":") && rest.dropFirst().allSatisfy(\.isNumber)) else { return false }
            return name == "::1"
        }
        let parts = authority.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count <= 2, parts.count == 1 || parts[1].allSatisfy(\.isNumber) else { return false }
        name = parts[0]
        if name.lowercased() == "localhost" { return true }
        let octets = name.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
    }
}
