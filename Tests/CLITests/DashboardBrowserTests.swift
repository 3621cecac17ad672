import DeviceBus
import Foundation
import HeadlessBrowser
import Registry
import Simulator
import Testing
import TestSupport

/// Issue 23, "done when": two stations (`keyline provision --wait` each, own fleets, one
/// registry) and `keyline dashboard`, looked at in a real headless Chromium. The floor shows both
/// stations; tiles move through their steps as devices are plugged in, without a reload; a device
/// pulled mid-flash turns its tile red with the reason; an alarm appears while station B's escrow
/// store is away and clears when it is back; the job page's CSV is `keyline report --format csv`'s;
/// a station login is refused; no page or event carries key material or the token. Screenshots go
/// to .build/test-artifacts/dashboard-*.png.
@Suite("keyline dashboard in headless Chromium: two stations, one registry", .serialized)
struct DashboardBrowserTests {
    static func port(_ index: Int) -> USBPortPath { USBPortPath(bus: 1, ports: [1, UInt8(index)]) }

    /// Records, for each tile's device, the steps the page has shown it in (DOM changes, not
    /// events), and marks the document so a reload would be noticed.
    static let stepRecorder = """
        (() => {
          window.__documentMark = 'first load';
          window.__tileSteps = {};
          const take = () => {
            for (const tile of document.querySelectorAll('.tile[data-device]')) {
              const seen = window.__tileSteps[tile.dataset.device] || (window.__tileSteps[tile.dataset.device] = []);
              const step = (tile.dataset.step || '') + '/' + tile.dataset.state;
              if (seen[seen.length - 1] !== step) { seen.push(step); }
            }
          };
          take();
          new MutationObserver(take).observe(document.getElementById('floor'), { childList: true, subtree: true, attributes: true });
          return true;
        })()
        """

    static func tile(_ station: String, device: String) -> String {
        "document.querySelector('.tile[data-station=\"\(station)\"][data-device=\"\(device)\"]')"
    }

    @Test("the floor follows two stations live; failures, store alarms, CSV, refused logins, no secrets",
          .enabled(if: TestPostgres.trustsNewLogins, "new logins connect without a password only on the local cluster's socket"),
          .timeLimit(.minutes(15)))
    func floorFollowsTwoStations() async throws {
        let floor = try await DashboardFloor(timeScale: 0.2, seed: 2301)
        var failure: (any Error)?
        do {
            try await run(floor)
        } catch {
            failure = error
        }
        await floor.stop()
        if let failure { throw failure }
    }

    private func run(_ floor: DashboardFloor) async throws {
        // A station login is refused before anything is served.
        let refused = try await ChildProcess.run(Subprocess.keyline, ["dashboard", "--listen", "127.0.0.1:\(try StoreOutageTests.freePort())"],
                                                 environment: floor.environment(as: floor.logins.a), timeout: .seconds(120))
        #expect(refused.status == 77, "a station login was not refused: \(refused.status)\n\(refused.stderr)")
        #expect(refused.stderr.contains(floor.logins.a) || refused.stderr.contains("station"), "\(refused.stderr)")

        try await floor.storeUp()
        try await floor.startDashboard()
        let runA = try floor.provision(station: floor.environmentA, devices: 2, label: "station-a")
        let runB = try floor.provision(station: floor.environmentB, devices: 2, label: "station-b")
        let startedA = try await runA.waitForEvents(within: .seconds(120)) { $0.contains { $0["type"] as? String == "job_started" } }
        let startedB = try await runB.waitForEvents(within: .seconds(120)) { $0.contains { $0["type"] as? String == "job_started" } }
        try #require(startedA && startedB, "a station did not start its job\nA: \(runA.stderr)\nB: \(runB.stderr)")

        try await HeadlessChromium.with(in: floor.line.scratch.url) { browser in
            // The token typed once into the login form (POSTed, never in a URL) becomes a cookie;
            // the floor then streams with it.
            let page = try await browser.open("\(floor.dashboardURL)/login", initScript: EventSourceRecorder.script())
            try await page.waitFor("document.getElementById('login') !== null", deadline: .seconds(60), "the login form")
            _ = try await page.evaluate("""
                document.getElementById('token').value = '\(floor.token)'; document.getElementById('login').submit(); true
                """)
            // (No body while the POST's redirect is being followed.)
            try await page.waitFor("document.body?.dataset.page === 'floor'", deadline: .seconds(60), "the floor page after the login form")
            #expect(try await page.text("location.href") == "\(floor.dashboardURL)/", "the token must not be left in the URL")
            try await page.waitFor("document.getElementById('connection').dataset.state === 'live'", deadline: .seconds(60),
                                   "the floor's event stream to open")
            #expect(try await page.evaluate(Self.stepRecorder) == .bool(true))

            // Both stations, each with its running job.
            try await page.waitFor("""
                ['\(DashboardFloor.stationA)', '\(DashboardFloor.stationB)'].every(s =>
                  document.querySelector('.station[data-station="' + s + '"] [data-job]'))
                """, deadline: .seconds(60), "both stations with their jobs on the floor")
            try await page.screenshot("dashboard-floor-two-stations")

            // A device plugged in at each station moves through its steps on the open page.
            let a1 = try floor.line.fleet.add(.photon, at: Self.port(1), mode: .dfu)
            let b1 = try floor.fleetB.add(.photon, at: Self.port(1), mode: .dfu)
            for (station, device) in [(DashboardFloor.stationA, a1), (DashboardFloor.stationB, b1)] {
                try await page.waitFor("\(Self.tile(station, device: device.deviceID))?.dataset.state === 'done'",
                                       deadline: .seconds(180), "\(device.deviceID) done on \(station)'s tile")
                let steps = try await page.evaluate("window.__tileSteps['\(device.deviceID)'] || []").array?.compactMap(\.string) ?? []
                #expect(Set(steps.map { $0.split(separator: "/").first.map(String.init) ?? "" }).count >= 3,
                        "the tile of \(device.deviceID) did not move through its steps on the page: \(steps)")
            }
            #expect(try await page.text("window.__documentMark") == "first load", "the floor page was reloaded")
            try await page.screenshot("dashboard-floor-done")

            // A device pulled out mid-flash: its tile turns red with the reason.
            let victim = try floor.line.fleet.add(.photon, at: Self.port(2), mode: .dfu)
            try await waitUntil(deadline: .seconds(180), poll: .milliseconds(5), "the victim's flash to start") {
                victim.statistics.bytesProgrammed > 0
            }
            victim.unplug()
            let failedTile = Self.tile(DashboardFloor.stationA, device: victim.deviceID)
            try await page.waitFor("\(failedTile)?.dataset.state === 'failed' && \(failedTile).querySelector('.reason')",
                                   deadline: .seconds(120), "the pulled device's tile to turn red with its reason")
            let reason = try await page.text("\(failedTile).querySelector('.reason').textContent")
            let row = try await floor.line.registry().deviceRecords(deviceID: victim.deviceID).last
            let lastError = try #require(row?.lastError, "the registry holds no reason for \(victim.deviceID)")
            #expect(reason.contains(lastError), "tile says \(reason); the registry says \(lastError)")
            let colour = try await page.text("getComputedStyle(\(failedTile)).borderTopColor")
            let rgb = colour.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
            #expect(rgb.count >= 3 && rgb[0] >= 150 && rgb[1] <= 120 && rgb[2] <= 120, "the failed tile is not red: \(colour)")
            try await page.screenshot("dashboard-floor-failed-tile")

            // Station B's store goes away: its next device holds at escrow, the floor shows an alarm...
            await floor.storeDown()
            let held = try floor.fleetB.add(.photon, at: Self.port(2), mode: .dfu)
            try await page.waitFor("document.querySelector('#alarms [data-alarm=\"store\"]') !== null", deadline: .seconds(180),
                                   "the store alarm while station B's store is away")
            let alarm = try await page.text("document.querySelector('#alarms [data-alarm=\"store\"]').outerHTML")
            #expect(alarm.contains(DashboardFloor.stationB), "the store alarm does not name station B: \(alarm)")
            try await page.screenshot("dashboard-floor-store-alarm")
            // ...which clears once the store is back and the held device finishes.
            try await floor.storeUp()
            try await page.waitFor("\(Self.tile(DashboardFloor.stationB, device: held.deviceID))?.dataset.state === 'done'",
                                   deadline: .seconds(180), "the held device to finish once the store is back")
            try await page.waitFor("document.querySelector('#alarms [data-alarm=\"store\"]') === null", deadline: .seconds(60),
                                   "the store alarm to clear")
            #expect(try await page.text("window.__documentMark") == "first load", "the floor page was reloaded")
            try await page.screenshot("dashboard-floor-store-back")

            let resultA = try await runA.finish(within: .seconds(180))
            let resultB = try await runB.finish(within: .seconds(180))
            #expect(resultB.status == 0, "\(resultB.stderr)\n\(resultB.stdout.suffix(2000))")
            #expect(resultA.status != 0, "station A's run hid its failed device")
            let jobA = try #require(ProvisionLine.summary(resultA)?["jobID"] as? Int, "\(resultA.stdout.suffix(2000))")
            let jobB = try #require(ProvisionLine.summary(resultB)?["jobID"] as? Int, "\(resultB.stdout.suffix(2000))")

            // The job pages: the report, and a CSV that is `keyline report --format csv`'s, byte for byte.
            let jobPage = try await browser.open("\(floor.dashboardURL)/jobs/\(jobA)", initScript: EventSourceRecorder.script())
            try await jobPage.waitFor("document.body.innerText.includes('\(victim.deviceID)')", deadline: .seconds(60),
                                      "job \(jobA)'s page listing its devices")
            try await jobPage.screenshot("dashboard-job-page")
            for job in [jobA, jobB] {
                let served = try await jobPage.evaluate("fetch('/jobs/\(job).csv').then(r => r.text())").string ?? ""
                let reported = try await floor.line.keyline(["report", String(job), "--format", "csv"]).requireSuccess().stdout
                #expect(!reported.isEmpty && served == reported, "job \(job): the dashboard's CSV differs from keyline report's\n\(served)\n---\n\(reported)")
            }

            // Nothing secret in what a viewer gets: pages as the browser holds them, the raw
            // pages, and every event either page's stream delivered.
            let auditPage = try await browser.open("\(floor.dashboardURL)/audit?product=\(floor.product)")
            var haystacks: [(String, String)] = [
                ("floor page", try await page.html()), ("job page", try await jobPage.html()), ("audit page", try await auditPage.html()),
            ]
            for path in ["/", "/floor", "/jobs/\(jobA)", "/jobs/\(jobB)", "/jobs/\(jobA).csv", "/audit?product=\(floor.product)"] {
                haystacks.append(("GET \(path)", try await page.evaluate("fetch('\(path)').then(r => r.text())").string ?? ""))
            }
            for (name, tab) in [("floor", page), ("job", jobPage)] {
                let log = try await tab.evaluate("window.__eventSourceLog || []").array ?? []
                #expect(name != "floor" || log.count > 3, "the floor's stream delivered only \(log.count) events")
                haystacks.append(("\(name) page's events", log.compactMap { $0["value"]?.string }.joined(separator: "\n")))
            }
            let needles = try await floor.secretNeedles()
            #expect(needles.count > 8)
            for (place, text) in haystacks {
                #expect(!text.isEmpty, "\(place) is empty")
                for needle in needles where text.contains(needle) {
                    Issue.record("\(needle == floor.token ? "the dashboard's token" : "key material") found in \(place)")
                }
            }
        }
        #expect(await floor.dashboard?.stop() == 0, "keyline dashboard did not stop cleanly on SIGTERM")
    }
}
