import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
import TestSupport

/// `keyline report JOB` of a real simulated batch, one device of which is unplugged mid-flash.
@Suite("keyline report", .serialized)
struct ReportTests {
    @Test("per-device steps with timings, totals; the HTML page parses, has the chart and every device")
    func batchReport() async throws {
        let line = try await ProvisionLine(timeScale: 0.05, seed: 32) { fleet in
            for index in 1...4 { try fleet.add(.photon, at: ProvisionTests.port(1, index), mode: .dfu) }
        }
        defer { Task { await line.stop() } }
        let victim = try #require(line.fleet.device(at: ProvisionTests.port(1, 1)))
        let unplugger = Task {
            try await waitUntil(poll: .milliseconds(5), "victim.statistics.bytesProgrammed > 0") { victim.statistics.bytesProgrammed > 0 }
            victim.unplug()
        }
        let run = try await line.keyline(["provision", ProvisionLine.pipeline("photon-factory.yaml"), "--json", "--timeout", "2"])
        try await unplugger.value
        #expect(run.status == 3, "\(run.stderr)")
        let job = try #require(ProvisionLine.summary(run)?["jobID"] as? Int)
        // The step the unplug hit, as the run itself reported it (the flash of this small image
        // may already be over when the unplug lands; the report must agree with the run).
        let runDevices = ProvisionLine.summary(run)?["devices"] as? [[String: Any]] ?? []
        let failedStep = try #require(runDevices.first { $0["deviceID"] as? String == victim.deviceID }?["failedStep"] as? String)

        let json = try await line.keyline(["report", String(job), "--format", "json"]).requireSuccess()
        let report = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        let devices = try #require(report["devices"] as? [[String: Any]])
        #expect(devices.count == 4)
        let failed = devices.filter { $0["outcome"] as? String == "failed" }
        #expect(failed.count == 1)
        #expect(failed.first?["deviceID"] as? String == victim.deviceID)
        #expect(failed.first?["failedStep"] as? String == failedStep)
        #expect((failed.first?["reason"] as? String)?.isEmpty == false)
        for device in devices where device["outcome"] as? String == "done" {
            let steps = device["steps"] as? [[String: Any]] ?? []
            #expect(steps.map { $0["step"] as? String } == ["enter_dfu", "flash", "server_key", "device_key", "escrow", "register", "leave"])
            #expect(steps.allSatisfy { ($0["seconds"] as? Double ?? -1) >= 0 && ($0["start"] as? Double ?? -1) >= 0 })
        }
        let totals = try #require(report["totals"] as? [String: Any])
        #expect(totals["done"] as? Int == 3)
        #expect(totals["failed"] as? Int == 1)
        #expect((totals["wallSeconds"] as? Double ?? 0) > 0)
        #expect((totals["throughputPerMinute"] as? Double ?? 0) > 0)
        let efficiency = totals["parallelEfficiency"] as? Double ?? -1
        #expect(efficiency > 0 && efficiency <= 1)

        let csv = try await line.keyline(["report", String(job), "--format", "csv"]).requireSuccess()
        let rows = CSV.parse(csv.stdout)
        #expect(rows.first?.count == 13)
        #expect(rows.dropFirst().allSatisfy { $0.count == 13 })
        #expect(Set(rows.dropFirst().map { $0[2] }).count == 4)
        #expect(rows.contains { $0[2] == victim.deviceID && $0[7] == failedStep && $0[11] == "failed" })

        let table = try await line.keyline(["report", String(job)]).requireSuccess()
        #expect(table.stdout.contains("3 done, 1 failed"))

        let page = line.scratch.url.appendingPathComponent("report.html")
        try await line.keyline(["report", String(job), "--format", "html", "-o", page.path]).requireSuccess()
        let html = try Data(contentsOf: page)
        let document = HTMLOutline(html)
        #expect(document.error == nil, "not well-formed: \(String(describing: document.error))")
        #expect(document.svgCount == 1)
        #expect(document.stepBars >= 3 * 7 + 1)
        #expect(document.failedBars == 1)
        #expect(Set(document.deviceRows) == Set(line.fleet.allDevices.map(\.device.deviceID)))
        let text = String(decoding: html, as: UTF8.self)
        #expect(!text.contains("<script"))
        #expect(!text.contains("http://") || !text.replacingOccurrences(of: "http://www.w3.org/", with: "").contains("http://"))
        #expect(!text.contains("https://"))
        #expect(!text.contains("@import") && !text.contains("url("))

        // Rendered by a headless browser where one is installed (skipped cleanly where not): on a
        // desktop window and a phone-sized one, and printed to PDF. No network is allowed, so a
        // page that needed anything outside itself would render without it.
        if let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first(where: FileManager.default.isExecutableFile) {
            let isolated = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--proxy-server=127.0.0.1:9",
                            "--user-data-dir=\(line.scratch.url.appendingPathComponent("chromium").path)"]
            for (name, size) in [("desktop", "1200,1600"), ("phone", "390,844")] {
                let png = line.scratch.url.appendingPathComponent("report-\(name).png")
                let render = try await ChildProcess.run(chromium, isolated + ["--screenshot=\(png.path)", "--window-size=\(size)",
                                                                              "file://\(page.path)"], timeout: .seconds(120))
                #expect(render.status == 0, "\(name): \(render.stderr)")
                let bytes = try Data(contentsOf: png)
                #expect(bytes.starts(with: [0x89, 0x50, 0x4e, 0x47]), "\(name)")
                #expect(bytes.count > 10_000, "\(name): \(bytes.count) bytes is a blank page")
            }
            let pdf = line.scratch.url.appendingPathComponent("report.pdf")
            let printed = try await ChildProcess.run(chromium, isolated + ["--print-to-pdf=\(pdf.path)", "--no-pdf-header-footer",
                                                                           "file://\(page.path)"], timeout: .seconds(120))
            #expect(printed.status == 0, "\(printed.stderr)")
            #expect(try Data(contentsOf: pdf).starts(with: Array("%PDF".utf8)))
        }
    }
}

/// What the report test needs from the page, read with an XML parser (so it must be well-formed).
final class HTMLOutline: NSObject, XMLParserDelegate {
    var error: (any Error)?
    var svgCount = 0
    var stepBars = 0
    var failedBars = 0
    var deviceRows: [String] = []

    init(_ data: Data) {
        super.init()
        let parser = XMLParser(data: data)
        parser.delegate = self
        if !parser.parse() { error = parser.parserError ?? CLITestFailure("XML parse failed") }
    }

    func parser(_ parser: XMLParser, didStartElement element: String, namespaceURI: String?, qualifiedName: String?,
                attributes: [String: String] = [:]) {
        if element == "svg" { svgCount += 1 }
        if element == "rect", let classes = attributes["class"]?.split(separator: " "), classes.contains("step") {
            stepBars += 1
            if classes.contains("failed") { failedBars += 1 }
        }
        if element == "tr", let device = attributes["data-device"] { deviceRows.append(device) }
    }
}
