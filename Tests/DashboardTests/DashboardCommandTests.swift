import Foundation
import Registry
import Testing
import TestSupport

/// `keyline dashboard` as an operator runs it: refusals with their exit codes, the URL printed,
/// a clean stop on SIGTERM.
@Suite("keyline dashboard", .serialized)
struct DashboardCommandTests {
    static var keyline: String {
        URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
            .appendingPathComponent("keyline").path
    }

    static func environment(_ database: DashboardDatabase, user: String?) throws -> [String: String] {
        var environment = try TestPostgres.environment(database: database.name)
        if let user { environment["PGUSER"] = user }
        return environment
    }

    static func user(_ settings: ConnectionSettings) -> String {
        settings.overrides.last { $0.keyword == "user" }!.value
    }

    @Test("a non-loopback address without --token-file exits 64 and says why")
    func nonLoopbackNeedsToken() async throws {
        let result = try await ChildProcess.run(Self.keyline, ["dashboard", "--listen", "0.0.0.0:8080"], timeout: .seconds(120))
        #expect(result.status == 64)
        #expect(result.stderr.contains("--token-file"))
    }

    @Test("a token file others can read exits 78")
    func tokenFileMode() async throws {
        let directory = try ScratchDirectory()
        let path = directory.url.appendingPathComponent("token").path
        _ = FileManager.default.createFile(atPath: path, contents: Data("a-token-of-twenty-chars\n".utf8), attributes: [.posixPermissions: 0o644])
        let result = try await ChildProcess.run(Self.keyline, ["dashboard", "--listen", "0.0.0.0:8080", "--token-file", path],
                                                timeout: .seconds(120))
        #expect(result.status == 78)
        #expect(result.stderr.contains("chmod 600"))
    }

    @Test("a station login exits 77 naming its role; an auditor's dashboard prints its URL and stops on SIGTERM")
    func stationRefusedAuditorServes() async throws {
        try await DashboardDatabase.with { database in
            let station = Self.user(try await database.login("station", station: "line-a"))
            let refused = try await ChildProcess.run(Self.keyline, ["dashboard", "--listen", "127.0.0.1:0"],
                                                     environment: try Self.environment(database, user: station), timeout: .seconds(120))
            #expect(refused.status == 77)
            #expect(refused.stderr.contains("keyline_station"))

            let auditor = Self.user(try await database.login("auditor"))
            let process = Process()
            process.executableURL = URL(fileURLWithPath: Self.keyline)
            process.arguments = ["dashboard", "--listen", "127.0.0.1:0"]
            process.environment = ProcessInfo.processInfo.environment.merging(try Self.environment(database, user: auditor)) { $1 }
            let output = Pipe()
            process.standardOutput = output
            process.standardError = FileHandle.nullDevice
            let printed = LockedValue("")
            output.fileHandleForReading.readabilityHandler = { handle in
                let data = handle.availableData
                printed.update { $0 += String(decoding: data, as: UTF8.self) }
            }
            try process.run()
            defer { if process.isRunning { process.terminate() } }
            try await waitUntil(deadline: .seconds(120), "the URL printed") { printed.get().contains("listening on http://127.0.0.1:") }
            let line = printed.get()
            let url = String(line[line.range(of: "http://")!.lowerBound...].prefix { !$0.isNewline })
            #expect(try await get(url).status == 200)
            kill(process.processIdentifier, SIGTERM)
            try await waitUntil(deadline: .seconds(120), "the dashboard stopped") { !process.isRunning }
            output.fileHandleForReading.readabilityHandler = nil
            #expect(process.terminationStatus == 0)
        }
    }
}
