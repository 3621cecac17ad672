import Foundation
import HeadlessBrowser
import Testing
import TestSupport

/// The DevTools client against a tiny local page: before any dashboard test relies on it, it must
/// open a page, read the DOM that scripts change later, fail a wait that never comes, report a
/// script's exception, and keep a screenshot.
@Suite("HeadlessBrowser: Chromium over the DevTools protocol", .serialized)
struct HeadlessBrowserTests {
    /// A page whose tile moves from "detect" to "flash" 300 ms after load, then to a red "failed"
    /// when its button is clicked: what a live page does, without a server.
    static let page = """
        <!doctype html><html><head><meta charset="utf-8"><title>tiles</title>
        <style>.tile{width:120px;height:60px;margin:8px;background:#ddd}.tile[data-state=failed]{background:#c00;color:#fff}</style>
        </head><body>
        <div id="tile" class="tile" data-step="detect" data-state="running">detect</div>
        <button id="fail" onclick="const t=document.getElementById('tile');t.dataset.state='failed';t.textContent='flash failed: CRC'">x</button>
        <script>setTimeout(() => { const t = document.getElementById('tile'); t.dataset.step = 'flash'; t.textContent = 'flash'; }, 300);</script>
        </body></html>
        """

    @Test("opens a local page, waits for a script's change, evaluates, clicks, and keeps a screenshot",
          .timeLimit(.minutes(3)))
    func drivesALocalPage() async throws {
        let scratch = try ScratchDirectory(label: "browser")
        defer { scratch.remove() }
        try Data(Self.page.utf8).write(to: scratch.file("tiles.html"))
        try await HeadlessChromium.with(in: scratch.url) { browser in
            let page = try await browser.open(scratch.file("tiles.html").absoluteString)
            #expect(try await page.text("document.title") == "tiles")
            try await page.waitFor("document.getElementById('tile').dataset.step === 'flash'", deadline: .seconds(30))
            #expect(try await page.evaluate("1 + 2") == .number(3))
            #expect(try await page.evaluate("({a: [true, 'x']})") == ["a": [true, "x"]])
            try await page.evaluate("document.getElementById('fail').click()")
            try await page.waitFor("document.querySelector('[data-state=failed]') !== null", deadline: .seconds(30))
            #expect(try await page.text("document.getElementById('tile').textContent") == "flash failed: CRC")
            #expect(try await page.html().contains("data-state=\"failed\""))

            let shot = try await page.screenshot("headless-browser-tiles")
            let png = try Data(contentsOf: shot)
            #expect(png.count > 100)
            #expect(Array(png.prefix(8)) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A], "not a PNG: \(shot.path)")
            try await page.close()
        }
    }

    @Test("a condition that never holds fails the wait at its deadline; a throwing script is reported",
          .timeLimit(.minutes(3)))
    func failuresAreReported() async throws {
        let scratch = try ScratchDirectory(label: "browser")
        defer { scratch.remove() }
        try Data(Self.page.utf8).write(to: scratch.file("tiles.html"))
        try await HeadlessChromium.with(in: scratch.url) { browser in
            let page = try await browser.open(scratch.file("tiles.html").absoluteString)
            await #expect(throws: WaitTimedOut.self) {
                try await page.waitFor("document.getElementById('tile').dataset.step === 'leave'", deadline: .seconds(1))
            }
            do {
                try await page.evaluate("(() => { throw new Error('boom from the page') })()")
                Issue.record("a throwing script was not reported")
            } catch let error as DevToolsError {
                #expect("\(error)".contains("boom from the page"), "\(error)")
            }
            // Two tabs share the one connection and keep their own documents.
            let second = try await browser.open("data:text/html,<title>second</title>")
            #expect(try await second.text("document.title") == "second")
            #expect(try await page.text("document.title") == "tiles")
        }
    }

    @Test("stopping the browser ends its processes; a command after that fails instead of hanging",
          .timeLimit(.minutes(3)))
    func stopEndsTheBrowser() async throws {
        let scratch = try ScratchDirectory(label: "browser")
        defer { scratch.remove() }
        let browser = try await HeadlessChromium.launch(in: scratch.url)
        let pid = browser.processIdentifier
        #expect(kill(pid, 0) == 0)
        await browser.stop()
        #expect(kill(pid, 0) != 0, "chromium \(pid) still runs after stop()")
        await #expect(throws: DevToolsError.self) { try await browser.connection.call("Browser.getVersion") }
    }

    /// A page and a Server-Sent Events stream from a tiny Python server on loopback.
    static let server = """
        from http import server as web
        from os import rename
        from sys import argv
        PAGE = b'''<!doctype html><title>sse</title><p id="n">none</p><script>
        const s = new EventSource('/events');
        s.addEventListener('tick', e => { document.getElementById('n').textContent = e.data; });
        </script>'''
        class Handler(web.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == '/events':
                    self.send_response(200)
                    self.send_header('Content-Type', 'text/event-stream')
                    self.send_header('Cache-Control', 'no-store')
                    self.end_headers()
                    for i in range(1, 4):
                        self.wfile.write(b'event: tick\\ndata: %d\\n\\n' % i)
                        self.wfile.flush()
                    # Open until the browser goes away (EOF): a stream that ended would be
                    # reconnected to and replayed, however long the test takes.
                    self.rfile.read()
                else:
                    self.send_response(200)
                    self.send_header('Content-Type', 'text/html')
                    self.send_header('Content-Length', str(len(PAGE)))
                    self.end_headers()
                    self.wfile.write(PAGE)
            def log_message(self, *args):
                pass
        server = web.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        server.daemon_threads = True
        with open(argv[1] + '.tmp', 'w') as f:
            f.write(str(server.server_address[1]))
        rename(argv[1] + '.tmp', argv[1])
        server.serve_forever()
        """

    @Test("the EventSource recorder keeps each event the page listens for, with its arrival time",
          .timeLimit(.minutes(3)))
    func recordsServerSentEvents() async throws {
        let scratch = try ScratchDirectory(label: "browser")
        defer { scratch.remove() }
        try Data(Self.server.utf8).write(to: scratch.file("sse.py"))
        let python = Process()
        python.executableURL = try ChildProcess.locate("python3")
        python.arguments = [scratch.path("sse.py"), scratch.path("port")]
        python.standardOutput = FileHandle.nullDevice
        try python.run()
        defer { kill(python.processIdentifier, SIGKILL) }
        var port = 0
        try await waitUntil(deadline: .seconds(60), "the SSE server to listen") {
            port = Int((try? String(contentsOfFile: scratch.path("port"), encoding: .utf8)) ?? "") ?? 0
            return port > 0 || !python.isRunning
        }
        try #require(port > 0, "the Python SSE server did not start")

        try await HeadlessChromium.with(in: scratch.url) { browser in
            let page = try await browser.open("http://127.0.0.1:\(port)/", initScript: EventSourceRecorder.script())
            try await page.waitFor("document.getElementById('n').textContent === '3'", deadline: .seconds(30))
            let log = try await page.evaluate("window.__eventSourceLog")
            let events = log.array ?? []
            #expect(events.map { $0["type"]?.string } == ["tick", "tick", "tick"], "\(log)")
            #expect(events.map { $0["value"]?.string } == ["1", "2", "3"], "\(log)")
            let times = events.compactMap { $0["at"]?.number }
            #expect(times.count == 3 && times == times.sorted(), "\(times)")
            let now = Date().timeIntervalSince1970 * 1000
            #expect(times.allSatisfy { abs($0 - now) < 600_000 }, "arrival times are not on the host's clock: \(times), now \(now)")
        }
    }
}
