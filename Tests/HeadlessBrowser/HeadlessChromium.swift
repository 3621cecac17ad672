import Foundation
import TestSupport

/// Debian's `chromium`, headless, driven over the DevTools protocol: for tests and benches that
/// look at keyline's web pages as a browser shows them (JavaScript, Server-Sent Events, layout).
///
/// Each instance has a throwaway profile (`--user-data-dir`) under the caller's scratch folder and
/// lets Chromium choose a free port (`--remote-debugging-port=0`); the port and the browser's
/// WebSocket path are read back from the profile's DevToolsActivePort file.
public final class HeadlessChromium: @unchecked Sendable {
    public let connection: DevToolsConnection
    private let process: Process
    private let profile: URL
    /// Chromium's own standard output and error, for failure messages.
    public let log: URL

    private init(process: Process, connection: DevToolsConnection, profile: URL, log: URL) {
        self.process = process
        self.connection = connection
        self.profile = profile
        self.log = log
    }

    /// Starts Chromium with its profile in `folder/chromium-profile` and connects to it.
    /// Throws `ChildProcess.Failure.notFound` when chromium is not installed (`make browser-deps`).
    public static func launch(in folder: URL, windowSize: (width: Int, height: Int) = (1280, 1000),
                              startup: Duration = .seconds(90)) async throws -> HeadlessChromium {
        let executable = try ChildProcess.locate(ProcessInfo.processInfo.environment["KEYLINE_TEST_CHROMIUM"] ?? "chromium")
        let profile = folder.appendingPathComponent("chromium-profile")
        try FileManager.default.createDirectory(at: profile, withIntermediateDirectories: true)
        let log = folder.appendingPathComponent("chromium.log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        var arguments = [
            "--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
            "--user-data-dir=\(profile.path)", "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
            "--window-size=\(windowSize.width),\(windowSize.height)",
            // Nothing from outside: no updates, sync, metrics or extension downloads.
            "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
            "--metrics-recording-only", "--mute-audio",
            // Pages under test keep their timers and event streams running at full rate while
            // other tabs are in front (the bench opens many).
            "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
            "--disable-backgrounding-occluded-windows",
            // Containers often give /dev/shm only 64 MB; Chromium then crashes tabs.
            "--disable-dev-shm-usage",
        ]
        // Chromium refuses to run as root with its sandbox on; the tests (and CI) run as root on a
        // throwaway machine, so only then is the sandbox turned off. The pages are our own, on loopback.
        if geteuid() == 0 { arguments.append("--no-sandbox") }
        arguments.append("about:blank")

        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try? handle.close()

        do {
            let activePort = profile.appendingPathComponent("DevToolsActivePort")
            var endpoint: (port: Int, path: String)?
            try await waitUntil(deadline: startup, poll: .milliseconds(50), "Chromium to write DevToolsActivePort") {
                guard process.isRunning else {
                    throw BrowserFailure("chromium exited (\(process.terminationStatus)) before it listened:\n\(tail(of: log))")
                }
                // Written once Chromium listens: line 1 the port, line 2 the browser's WebSocket path.
                let lines = ((try? String(contentsOf: activePort, encoding: .utf8)) ?? "").split(separator: "\n")
                guard lines.count >= 2, let port = Int(lines[0]), port > 0 else { return false }
                endpoint = (port, String(lines[1]))
                return true
            }
            guard let endpoint else { throw BrowserFailure("no DevTools endpoint") }
            let connection = try await DevToolsConnection.connect(host: "127.0.0.1", port: endpoint.port, path: endpoint.path)
            return HeadlessChromium(process: process, connection: connection, profile: profile, log: log)
        } catch {
            kill(-process.processIdentifier, SIGKILL)
            kill(process.processIdentifier, SIGKILL)
            await process.waitForExit()
            throw error
        }
    }

    /// Runs `body` with a fresh browser and stops the browser afterwards, whether `body` threw or not.
    public static func with<T: Sendable>(in folder: URL, _ body: (HeadlessChromium) async throws -> T) async throws -> T {
        let browser = try await launch(in: folder)
        do {
            let result = try await body(browser)
            await browser.stop()
            return result
        } catch {
            await browser.stop()
            throw error
        }
    }

    /// A new tab showing `url`, once its document has loaded. `initScript` runs in every document
    /// of the tab before the page's own scripts (e.g. to record what an EventSource receives).
    public func open(_ url: String, initScript: String? = nil, loadDeadline: Duration = .seconds(60)) async throws -> BrowserPage {
        let created = try await connection.call("Target.createTarget", ["url": "about:blank"])
        guard let targetID = created["targetId"]?.string else {
            throw DevToolsError.unexpectedReply(method: "Target.createTarget", reply: created.description)
        }
        let attached = try await connection.call("Target.attachToTarget", ["targetId": .string(targetID), "flatten": true])
        guard let session = attached["sessionId"]?.string else {
            throw DevToolsError.unexpectedReply(method: "Target.attachToTarget", reply: attached.description)
        }
        let page = BrowserPage(connection: connection, targetID: targetID, session: session)
        if let initScript {
            // Scripts for new documents take effect once the Page domain is enabled in the session.
            try await connection.call("Page.enable", session: session)
            try await connection.call("Page.addScriptToEvaluateOnNewDocument", ["source": .string(initScript)], session: session)
        }
        try await page.navigate(url, loadDeadline: loadDeadline)
        return page
    }

    /// The browser's process ID (its renderers are its children), for memory figures.
    public var processIdentifier: Int32 { process.processIdentifier }

    /// Closes the browser (Browser.close, then SIGTERM, then SIGKILL to its process group).
    public func stop() async {
        if process.isRunning { _ = try? await connection.call("Browser.close") }
        await connection.close()
        if (try? await waitUntil(deadline: .seconds(20), poll: .milliseconds(50), "chromium to exit") { !process.isRunning }) == nil {
            process.terminate()
            if (try? await waitUntil(deadline: .seconds(10), poll: .milliseconds(50), "chromium to exit on SIGTERM") { !process.isRunning }) == nil {
                kill(-process.processIdentifier, SIGKILL)
                kill(process.processIdentifier, SIGKILL)
                await process.waitForExit()
            }
        }
    }

    /// The end of Chromium's log, for failure messages.
    public var logTail: String { tail(of: log) }
}

/// A test-side failure around the browser (it did not start, a page did not load).
public struct BrowserFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

private func tail(of file: URL, bytes: Int = 4000) -> String {
    let text = (try? String(contentsOf: file, encoding: .utf8)) ?? ""
    return String(text.suffix(bytes))
}
