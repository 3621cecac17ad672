import ArgumentParser
import CommandReporting
import Dashboard
import Foundation

/// `keyline dashboard`: the read-only web view across stations (floor, jobs, audit), live.
struct DashboardCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dashboard",
        abstract: "Serve the line supervisor's live web dashboard (floor, jobs, audit), read-only.",
        discussion: """
            Connects with the usual database settings (DATABASE_URL or libpq's PG* variables) as an \
            auditor-only login: a login that can write any table, is a superuser, or is a member of \
            keyline_station or keyline_rma is refused. Pages: / (the floor: every station, a tile per \
            port, shift figures, alarms), /jobs/ID (the job report and each device's log), \
            /jobs/ID.csv (the same bytes as `keyline report ID --format csv`), /audit?product=P \
            (registry-only audit findings, restorations, events by station/actor/time), /events \
            (Server-Sent Events). Shifts are 8 hours from 06:00, 14:00 and 22:00 UTC.

            Binds to loopback by default. Any other address needs --token-file FILE (mode 0600): \
            viewers send `Authorization: Bearer TOKEN`, or type it once into the /login form (it sets a \
            cookie; the token is never put in a URL). Prints the URL once listening; stops cleanly on Ctrl-C or SIGTERM.

            EXIT CODES
              0   stopped by SIGINT/SIGTERM
              64  --listen is not HOST:PORT, or a non-loopback address without --token-file
              69  the server could not listen (address in use, not an address of this machine)
              75  registry unreachable
              77  the login is not auditor-only (it could write, or is a station/RMA/admin login)
              78  the token file is unreadable, readable by others, or holds no valid token
            """)

    @Option(help: "Where to listen, HOST:PORT (loopback unless --token-file is given).")
    var listen = "127.0.0.1:8080"

    @Option(help: "A file (mode 0600) holding the token viewers must present; required off loopback.")
    var tokenFile: String?

    func run() async throws {
        try await CLI.run(json: false) {
            let token = try tokenFile.map { try AccessToken.read(path: $0) }
            let settings = try DashboardSettings(listen: listen, token: token)
            let server = try await DashboardServer.prepare(settings: settings)
            try await server.run { url in
                FileHandle.standardOutput.write(Data("keyline dashboard listening on \(url)\n".utf8))
            }
        }
    }
}
