import AsyncHTTPClient
import Audit
import Foundation
import NIOCore
import Registry
import Testing
import TestSupport
@testable import Dashboard

@Suite("Dashboard", .serialized)
struct DashboardTests {
    @Test("the listener hands over a NOTIFY after a job_device state write, and says when it reconnects")
    func listenerDeliversStateWrites() async throws {
        try await DashboardDatabase.with { database in
            let listener = NotificationListener(settings: try await database.login("auditor"), channel: "keyline_floor",
                                                initialBackoff: 0.05)
            let seen = LockedValue<[ListenerUpdate]>([])
            listener.start()
            let reader = Task { for await update in listener.updates { seen.update { $0.append(update) } } }
            defer { listener.stop(); reader.cancel() }
            try await waitUntil(deadline: .seconds(60), "LISTEN in force") { seen.get().contains(.connected(reconnected: false)) }

            let job = try await FloorFixture.job(database.admin, station: "line-a")
            let device = FloorFixture.deviceID(1)
            _ = try await database.admin.startJobDevice(jobID: job.id, deviceID: device, platform: "p2", station: "line-a",
                                                        portPath: "1-1.2")
            try await waitUntil(deadline: .seconds(60), "the job_devices notification") {
                seen.get().contains { update in
                    guard case .notification(let payload) = update else { return false }
                    return payload.contains("\"job_devices\"") && payload.contains(device) && payload.contains("\"line-a\"")
                }
            }
            // No key material or event detail in a payload: only table, job, device, station (and kind).
            for case .notification(let payload) in seen.get() {
                let object = try #require(try JSONSerialization.jsonObject(with: Data(payload.utf8)) as? [String: Any])
                #expect(Set(object.keys).isSubset(of: ["table", "job", "device", "station", "kind"]))
            }

            // The server drops the listener's connection: it says so, and comes back.
            try await database.admin.client.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'keyline-listen' AND datname = $1",
                [database.name])
            try await waitUntil(deadline: .seconds(60), "disconnected, then reconnected") {
                let updates = seen.get()
                guard let lost = updates.firstIndex(where: { if case .disconnected = $0 { true } else { false } }) else { return false }
                return updates[lost...].contains(.connected(reconnected: true))
            }
            _ = try await database.admin.advanceJobDevice(jobID: job.id, deviceID: device, from: "detected", to: "dfu")
            try await waitUntil(deadline: .seconds(60), "a notification after the reconnect") {
                let updates = seen.get()
                guard let back = updates.firstIndex(of: .connected(reconnected: true)) else { return false }
                return updates[back...].contains { if case .notification = $0 { true } else { false } }
            }
        }
    }

    @Test("the floor shows every station, its ports, each device's step and a failure's reason from registry rows")
    func floorFromRegistryRows() async throws {
        try await DashboardDatabase.with { database in
            let registry = database.admin
            let job = try await FloorFixture.job(registry, station: "line-a")
            let running = FloorFixture.deviceID(1)
            let failed = FloorFixture.deviceID(2)
            _ = try await registry.startJobDevice(jobID: job.id, deviceID: running, platform: "p2", station: "line-a", portPath: "1-1.1")
            try await registry.advanceJobDevice(jobID: job.id, deviceID: running, from: "detected", to: "dfu")
            try await registry.advanceJobDevice(jobID: job.id, deviceID: running, from: "dfu", to: "flashed")
            _ = try await registry.startJobDevice(jobID: job.id, deviceID: failed, platform: "p2", station: "line-a", portPath: "1-1.2")
            try await registry.recordStep(StepRecord(jobID: job.id, deviceID: failed, step: "enter_dfu", startedAt: Date(), seconds: 1,
                                                     attempts: 1, outcome: .failed, reason: "no DFU device came back", portPath: "1-1.2",
                                                     station: "line-a"))
            try await registry.failJobDevice(jobID: job.id, deviceID: failed, from: "detected", reason: "no DFU device came back")
            try await registry.writeStationStatus(station: "line-b", jobID: nil, storeState: .holding, storeDetail: "S3 answered 503",
                                                  ports: [StationPort(path: "2-1", name: "slot 1")])
            try await registry.appendEvent(kind: "port.not_permitted", station: "line-a", detail: ["port": "1-1.9"])

            try await withDashboard(database) { base, _ in
                let page = try await get(base)
                #expect(page.status == 200)
                let html = page.body
                #expect(html.contains("data-station=\"line-a\""))
                #expect(html.contains("data-station=\"line-b\""))
                #expect(html.contains("data-port=\"1-1.1\" data-state=\"running\" data-step=\"server_key\" data-device=\"\(running)\""))
                #expect(html.contains("data-port=\"1-1.2\" data-state=\"failed\" data-step=\"dfu\" data-device=\"\(failed)\""))
                #expect(html.contains("no DFU device came back"))
                #expect(html.contains("data-port=\"1-1.9\" data-state=\"not-permitted\""))
                #expect(html.contains("<strong>slot 1</strong>"))
                #expect(html.contains("data-alarm=\"store\" data-station=\"line-b\""))
                #expect(!html.contains("http://") && !html.contains("https://"), "self-contained: nothing from elsewhere")
            }
        }
    }

    @Test("the event stream delivers a change and a new floor after a state write")
    func eventStreamAfterStateWrite() async throws {
        try await DashboardDatabase.with { database in
            let job = try await FloorFixture.job(database.admin, station: "line-a")
            try await withDashboard(database) { base, _ in
                let received = LockedValue("")
                let reader = Task {
                    let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: base + "events"), timeout: .seconds(300))
                    for try await chunk in response.body { received.update { $0 += String(buffer: chunk) } }
                }
                defer { reader.cancel() }
                try await waitUntil(deadline: .seconds(60), "the first floor event") { received.get().contains("event: floor") }
                let device = FloorFixture.deviceID(7)
                _ = try await database.admin.startJobDevice(jobID: job.id, deviceID: device, platform: "p2", station: "line-a",
                                                            portPath: "3-1")
                try await waitUntil(deadline: .seconds(60), "the change and the floor naming the device") {
                    let text = received.get()
                    return text.contains("event: change") && text.contains("data-device=\"\(device)\"")
                }
            }
        }
    }

    @Test("a station, RMA or administrator login is refused; an auditor-only login is accepted")
    func writersRefused() async throws {
        try await DashboardDatabase.with { database in
            let settings = try DashboardSettings(listen: "127.0.0.1:0", token: nil)
            for login in [try await database.login("station", station: "line-a"), try await database.login("rma", station: "bench"),
                          database.settings] {
                await #expect(throws: DashboardError.self) {
                    _ = try await DashboardServer.prepare(settings: settings, database: login)
                }
            }
            do {
                _ = try await DashboardServer.prepare(settings: settings, database: try await database.login("station"))
                Issue.record("a station login was accepted")
            } catch let DashboardError.loginNotAuditorOnly(access) {
                #expect(access.roles.contains("keyline_station"))
                #expect(!access.writableTables.isEmpty)
            }
            let auditor = try await DashboardServer.prepare(settings: settings, database: try await database.login("auditor"))
            #expect(auditor.settings.port == 0)
        }
    }

    @Test("off loopback a token is required; a wrong token gets 401, the right one (header or cookie) the page")
    func tokenChecks() throws {
        #expect(throws: DashboardError.tokenRequired(address: "0.0.0.0:8080")) {
            try DashboardSettings(listen: "0.0.0.0:8080", token: nil)
        }
        #expect(throws: DashboardError.tokenRequired(address: "192.0.2.7:80")) {
            try DashboardSettings(listen: "192.0.2.7:80", token: nil)
        }
        #expect(try DashboardSettings(listen: "127.0.0.1:8080", token: nil).host == "127.0.0.1")
        #expect(try DashboardSettings(listen: "[::1]:8080", token: nil).host == "::1")
        #expect(throws: DashboardError.badListenAddress("localhost")) { try DashboardSettings(listen: "localhost", token: nil) }
        #expect(throws: DashboardError.badListenAddress("127.0.0.1:99999")) {
            try DashboardSettings(listen: "127.0.0.1:99999", token: nil)
        }
        let token = try AccessToken("correct-horse-battery-staple")
        #expect(token.matches("correct-horse-battery-staple"))
        #expect(!token.matches("correct-horse-battery-stapl"))
        #expect(!token.matches("correct-horse-battery-staple0"))
        #expect(!token.matches(nil))
    }

    @Test("the token is enforced over HTTP: 401 without or with a wrong one, 200 with Bearer or the cookie the /login form sets; never in a URL")
    func tokenOverHTTP() async throws {
        let secret = "s3cret-token-for-the-floor"
        try await DashboardDatabase.with { database in
            try await withDashboard(database, token: try AccessToken(secret)) { base, _ in
                #expect(try await get(base).status == 401)
                #expect(try await get(base + "events").status == 401)
                #expect(try await get(base, headers: [("Authorization", "Bearer wrong-token-wrong-token")]).status == 401)
                #expect(try await post(base + "login", form: "token=wrong-token-wrong-token").status == 401)
                #expect(try await post(base + "login", form: "user=x").status == 401)
                #expect(try await post(base + "login", form: "token=" + String(repeating: "a", count: 5000)).status == 413)
                // Another site's page may not post a token here, not even the right one.
                #expect(try await post(base + "login", form: "token=\(secret)", headers: [("Sec-Fetch-Site", "cross-site")]).status == 403)
                // The login page's stylesheet and script hold no data: served without the token.
                #expect(try await get(base + "dashboard.css").status == 200)
                #expect(try await get(base + "dashboard.js").status == 200)
                let page = try await get(base, headers: [("Authorization", "Bearer \(secret)")])
                #expect(page.status == 200)
                #expect(!page.body.contains(secret), "the token never appears in a page")
                // The token in a URL is not a login: GET /login only shows the form.
                let inURL = try await get(base + "login?token=\(secret)")
                #expect(inURL.status == 200 && inURL.setCookies.isEmpty && inURL.body.contains("method=\"post\""), "\(inURL)")
                #expect(!inURL.body.contains(secret))
                let login = try await post(base + "login", form: "other=1&token=\(secret.replacingOccurrences(of: "-", with: "%2D"))",
                                           headers: [("Sec-Fetch-Site", "same-origin")])
                #expect(login.status == 303)
                let cookie = try #require(login.setCookies.first)
                #expect(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"))
                #expect(try await get(base, headers: [("Cookie", "token=\(secret)")]).status == 200)
            }
        }
    }

    @Test("without a token only loopback host names are answered (no DNS rebinding from a page on the station PC)")
    func loopbackHostOnly() async throws {
        for good in ["localhost", "localhost:8080", "127.0.0.1", "127.0.0.1:80", "127.1.2.3:9", "[::1]", "[::1]:8080", "LOCALHOST"] {
            #expect(LoopbackHostCheck.isLoopback(host: good), "\(good)")
        }
        for bad in ["evil.example", "evil.example:8080", "127.0.0.1.evil.example", "10.0.0.1", "[::2]", "[::1]x", "localhost:80:80",
                    "127.0.0.256", "", "127.0.0.1:http"] {
            #expect(!LoopbackHostCheck.isLoopback(host: bad), "\(bad)")
        }
        try await DashboardDatabase.with { database in
            try await withDashboard(database) { base, _ in
                #expect(try await get(base).status == 200)
                let rebound = try await get(base, headers: [("Host", "evil.example:8080")])
                #expect(rebound.status == 421)
                #expect(try await get(base + "events", headers: [("Host", "evil.example")]).status == 421)
            }
        }
    }

    @Test("/jobs/ID.csv is byte-identical to keyline report --format csv; no page holds key material")
    func csvMatchesReportAndNoKeyMaterial() async throws {
        try await DashboardDatabase.with { database in
            let registry = database.admin
            let job = try await FloorFixture.job(registry, station: "line-a")
            let device = FloorFixture.deviceID(3)
            _ = try await registry.startJobDevice(jobID: job.id, deviceID: device, platform: "p2", station: "line-a", portPath: "1-1.3")
            try await registry.recordStep(StepRecord(jobID: job.id, deviceID: device, step: "enter_dfu", startedAt: Date(), seconds: 0.5,
                                                     attempts: 2, outcome: .failed, reason: "timeout, \"twice\"", portPath: "1-1.3",
                                                     station: "line-a"))
            try await registry.failJobDevice(jobID: job.id, deviceID: device, from: "detected", reason: "timeout, \"twice\"")
            let reportCSV = try await KeylineReport.csv(job: job.id, database: database.name)
            try await withDashboard(database) { base, _ in
                let csv = try await get(base + "jobs/\(job.id).csv")
                #expect(csv.status == 200)
                #expect(csv.body == reportCSV)
                #expect(csv.body.contains("\"timeout, \"\"twice\"\"\""))
                let page = try await get(base + "jobs/\(job.id)")
                #expect(page.status == 200)
                #expect(page.body.contains("id=\"device-\(device)\" data-device=\"\(device)\" data-state=\"failed\""))
                #expect(try await get(base + "jobs/999999").status == 404)
                let audit = try await get(base + "audit?product=\(FloorFixture.product)")
                #expect(audit.status == 200)
                for body in [page.body, audit.body, try await get(base).body] {
                    #expect(!body.contains("BEGIN"), "no PEM")
                    #expect(!body.lowercased().contains("spki"))
                    #expect(!body.contains("AGE-SECRET-KEY"))
                }
            }
        }
    }
}

/// `keyline report JOB --format csv`, the binary built beside this test bundle.
enum KeylineReport {
    static func csv(job: Int64, database: String) async throws -> String {
        let keyline = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
            .appendingPathComponent("keyline").path
        let result = try await ChildProcess.run(keyline, ["report", String(job), "--format", "csv"],
                                                environment: try TestPostgres.environment(database: database),
                                                timeout: .seconds(300)).requireSuccess()
        return result.stdout
    }
}

@Suite("What a floor notification may pass on")
struct FloorChangeTests {
    @Test("the triggers' payloads pass as checked fields; anything a login could NOTIFY by hand is dropped or cut down")
    func sanitized() throws {
        let good = #"{"table": "job_devices", "job": 12, "device": "e00fce68a1b2c3d4e5f60718", "station": "line-1 station 3"}"#
        #expect(FloorChange.sanitized(good) == #"{"device":"e00fce68a1b2c3d4e5f60718","job":12,"station":"line-1 station 3","table":"job_devices"}"#)
        #expect(FloorChange.sanitized(#"{"table": "events", "job": null, "device": null, "station": "s", "kind": "port.not_permitted"}"#)
                == #"{"kind":"port.not_permitted","station":"s","table":"events"}"#)
        // Extra fields are dropped: a token smuggled in never reaches a viewer.
        let smuggled = FloorChange.sanitized(#"{"table": "jobs", "job": 3, "token": "s3cret-token", "detail": {"x": 1}}"#)
        #expect(smuggled == #"{"job":3,"table":"jobs"}"#)
        for bad in ["not json", #"{"table": "pg_authid"}"#, #"{"job": 1}"#, #"{"table": "jobs", "job": -1}"#,
                    #"{"table": "jobs", "job": 1.5}"#, #"{"table": "jobs", "device": "<script>alert(1)</script>"}"#,
                    #"{"table": "events", "kind": "Bad Kind"}"#, #"{"table": "jobs", "station": "a\u0007b"}"#,
                    "{\"table\": \"jobs\", \"station\": \"" + String(repeating: "x", count: 3000) + "\"}"] {
            #expect(FloorChange.sanitized(bad) == nil, "\(bad.prefix(80))")
        }
    }
}
