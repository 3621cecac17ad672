import Foundation
import TestSupport

/// One tab, reached through its flattened DevTools session.
public struct BrowserPage: Sendable {
    let connection: DevToolsConnection
    public let targetID: String
    public let session: String

    /// Loads `url` and waits (polling, bounded by `loadDeadline`) until its document is complete.
    public func navigate(_ url: String, loadDeadline: Duration = .seconds(60)) async throws {
        let reply = try await connection.call("Page.navigate", ["url": .string(url)], session: session)
        if let error = reply["errorText"]?.string, !error.isEmpty {
            throw BrowserFailure("the browser could not load \(url): \(error)")
        }
        try await waitFor("document.readyState === 'complete' && location.href !== 'about:blank'",
                          deadline: loadDeadline, "\(url) to load")
    }

    /// The value of `expression` evaluated in the page (promises awaited), as JSON.
    @discardableResult
    public func evaluate(_ expression: String) async throws -> JSONValue {
        let reply = try await connection.call("Runtime.evaluate", [
            "expression": .string(expression), "returnByValue": true, "awaitPromise": true,
        ], session: session)
        if let details = reply["exceptionDetails"] {
            let text = details["exception"]?["description"]?.string ?? details["text"]?.string ?? details.description
            throw DevToolsError.scriptThrew(expression: expression, details: text)
        }
        return reply["result"]?["value"] ?? .null
    }

    /// `expression` as a string (`String(value)` in the page).
    public func text(_ expression: String) async throws -> String {
        try await evaluate("String(\(expression))").string ?? ""
    }

    /// Waits until the JavaScript `condition` is true in the page, evaluating it every `poll`, and
    /// throws `WaitTimedOut` once `deadline` has passed: a wait on an event, never a sleep.
    public func waitFor(_ condition: String, deadline: Duration = .seconds(60), poll: Duration = .milliseconds(100),
                        _ what: @autoclosure () -> String? = nil, fileID: String = #fileID, line: Int = #line) async throws {
        try await waitUntil(deadline: deadline, poll: poll, what() ?? "the page to satisfy `\(condition)`",
                            fileID: fileID, line: line) {
            try await evaluate("Boolean(\(condition))").bool == true
        }
    }

    /// The page's outer HTML as the browser holds it now (after scripts ran).
    public func html() async throws -> String {
        try await text("document.documentElement.outerHTML")
    }

    /// A PNG screenshot of the page, written to `TestArtifacts.directory/<name>.png`; returns its path.
    @discardableResult
    public func screenshot(_ name: String, fullPage: Bool = true) async throws -> URL {
        let reply = try await connection.call("Page.captureScreenshot", [
            "format": "png", "captureBeyondViewport": .bool(fullPage),
        ], session: session)
        guard let base64 = reply["data"]?.string, let png = Data(base64Encoded: base64) else {
            throw DevToolsError.unexpectedReply(method: "Page.captureScreenshot", reply: String(reply.description.prefix(200)))
        }
        let file = try TestArtifacts.directory().appendingPathComponent("\(name).png")
        try png.write(to: file)
        return file
    }

    /// Closes the tab.
    public func close() async throws {
        try await connection.call("Target.closeTarget", ["targetId": .string(targetID)])
    }
}

/// Where tests keep what a person may want to look at after a run (screenshots): `.build/test-artifacts/`
/// of the package (ignored by git with the rest of .build), or `KEYLINE_TEST_ARTIFACTS`.
public enum TestArtifacts {
    public static func directory() throws -> URL {
        let url: URL
        if let configured = ProcessInfo.processInfo.environment["KEYLINE_TEST_ARTIFACTS"], !configured.isEmpty {
            url = URL(fileURLWithPath: configured)
        } else {
            // Tests/HeadlessBrowser/BrowserPage.swift → the package root.
            url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent(".build/test-artifacts")
        }
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}
