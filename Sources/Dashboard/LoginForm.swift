import Foundation
import Hummingbird

/// `/login`: a viewer off loopback types the token once into a form, POSTed as a form field, and
/// gets it back as an HttpOnly, SameSite=Strict cookie. The token never travels in a URL, where
/// the browser's history, a proxy's log and a Referer header would keep it.
struct LoginForm {
    /// A form with one field: anything longer is not a login.
    static let maximumBody = 4096

    let token: AccessToken?

    func page() -> Response {
        guard token != nil else { return .redirect(to: "/") }
        return DashboardServer.html(HTMLPage.layout(title: "Token", page: "login", content: """
            <form id="login" method="post" action="/login">
            <label for="token">Dashboard token</label>
            <input id="token" name="token" type="password" autocomplete="current-password" required>
            <button type="submit">Open the floor</button>
            </form>
            """))
    }

    func submit(_ request: Request) async throws -> Response {
        guard let token else { return .redirect(to: "/") }
        // Only this dashboard's own form: a page elsewhere may not post a token to it (the
        // browser says where a request comes from; clients that do not are not browsers).
        if let site = request.headers.first(where: { $0.name.canonicalName == "sec-fetch-site" })?.value,
           site != "same-origin", site != "none" {
            return DashboardServer.text("log in through this dashboard's own /login form", type: "text/plain; charset=utf-8",
                                        status: .forbidden)
        }
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: Self.maximumBody)
        } catch {
            return DashboardServer.text("a login form is at most \(Self.maximumBody) bytes", type: "text/plain; charset=utf-8",
                                        status: .contentTooLarge)
        }
        let presented = Self.field("token", in: String(buffer: body))
        guard token.matches(presented), let presented else { return TokenCheck.unauthorized() }
        var response = Response.redirect(to: "/")  // 303 See Other: the floor is fetched with GET
        response.setCookie(Cookie(name: "token", value: String(presented), path: "/", httpOnly: true, sameSite: .strict))
        return response
    }

    /// The value of `name` in an `application/x-www-form-urlencoded` body (`+` is a space, `%XX` a
    /// byte); nil when it is absent or not valid percent-encoding.
    static func field(_ name: String, in body: String) -> Substring? {
        for pair in body.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, parts[0] == name else { continue }
            return parts[1].replacingOccurrences(of: "+", with: " ").removingPercentEncoding.map { Substring($0) }
        }
        return nil
    }
}
