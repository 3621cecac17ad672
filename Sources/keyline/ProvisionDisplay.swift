import Foundation
import Provisioning

/// How `keyline provision` shows a run: a live table that updates in place on a terminal, JSON
/// lines with `--json`, plain lines (state changes only) when the output is a file or a pipe.
final class ProvisionDisplay: @unchecked Sendable {
    enum Style { case table, json, lines }

    struct Row {
        var port: String
        /// The port's nickname from the pipeline's `ports:` list.
        var portName = ""
        var deviceID = ""
        var platform = ""
        var step = ""
        var progress = ""
        var elapsed: Double = 0
        var outcome = ""
    }

    let style: Style
    private let lock = NSLock()
    private let output = FileHandle.standardOutput
    /// Output is written here, in order: device tasks never wait on a slow terminal or pipe.
    private let outputQueue = DispatchQueue(label: "keyline.provision.output")
    private var rows: [String: Row] = [:]   // by port
    private var header = ""
    private var footer = ""
    private var drawnLines = 0
    private var dirty = false
    private var timer: DispatchSourceTimer?

    init(style: Style) {
        self.style = style
        if style == .table {
            // Redrawn at most 10 times a second, however fast events come.
            let timer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "keyline.provision.display"))
            timer.schedule(deadline: .now(), repeating: .milliseconds(100))
            timer.setEventHandler { [weak self] in self?.redrawIfDirty() }
            timer.resume()
            self.timer = timer
        }
    }

    func handle(_ event: ProvisioningEvent) {
        switch style {
        case .json:
            write(event.jsonLine() + "\n")
        case .lines:
            if event.type != .progress && event.type != .stepStarted { write(Self.line(event) + "\n") }
        case .table:
            lock.withLock {
                update(with: event)
                dirty = true
            }
        }
    }

    /// Draws the final table, stops redrawing, and waits until everything is written.
    func finish() async {
        timer?.cancel()
        timer = nil
        if style == .table { redraw() }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            outputQueue.async { continuation.resume() }
        }
    }

    /// A note for the person at the station, outside the table (stderr for JSON output).
    func say(_ text: String) {
        if style == .json {
            FileHandle.standardError.write(Data((text + "\n").utf8))
        } else {
            lock.withLock {
                write(text + "\n")
                drawnLines = 0   // the table is drawn afresh below the note
            }
        }
    }

    // MARK: The table

    private func update(with event: ProvisioningEvent) {
        if event.type == .jobStarted, let message = event.message {
            header = message
            return
        }
        if event.type == .jobFinished, let message = event.message {
            footer = message
            return
        }
        guard let port = event.port else { return }
        var row = rows[port] ?? Row(port: port)
        if let name = event.portName { row.portName = name }
        if let deviceID = event.deviceID { row.deviceID = deviceID }
        if let platform = event.platform { row.platform = platform }
        if let step = event.step { row.step = step.rawValue }
        if let elapsed = event.elapsed { row.elapsed = elapsed }
        switch event.type {
        case .progress:
            if let done = event.done, let total = event.total, total > 0 {
                row.progress = "\(event.message ?? "") \(done * 100 / total)%"
            }
        case .stepStarted:
            row.progress = ""
            row.outcome = event.attempt.map { $0 > 1 ? "attempt \($0)" : "" } ?? ""
        case .stateChanged:
            row.progress = event.state?.rawValue ?? ""
        case .retrying:
            row.outcome = "retrying"
        case .held:
            row.outcome = "held: " + (event.failureClass ?? "")
        case .portNotPermitted:
            row.progress = ""
            row.outcome = "not permitted (port not in the pipeline's ports list): not touched"
        case .deviceFinished:
            row.progress = ""
            row.outcome = event.outcome?.rawValue ?? ""
            if event.outcome == .failed || event.outcome == .skipped, let message = event.message {
                row.outcome += ": " + message
            }
        default:
            break
        }
        rows[port] = row
    }

    private func redrawIfDirty() {
        let shouldDraw = lock.withLock { () -> Bool in
            defer { dirty = false }
            return dirty
        }
        if shouldDraw { redraw() }
    }

    private func redraw() {
        lock.withLock {
            let width = Self.terminalWidth()
            var lines = [header]
            lines.append(Self.columns(["PORT", "DEVICE ID", "PLATFORM", "STEP", "PROGRESS", "ELAPSED", "OUTCOME"]))
            for row in rows.values.sorted(by: { Self.portOrder($0.port, $1.port) }) {
                lines.append(Self.columns([row.portName.isEmpty ? row.port : "\(row.port) \(row.portName)", row.deviceID, row.platform, row.step, row.progress,
                                           String(format: "%.1fs", row.elapsed), row.outcome]))
            }
            if !footer.isEmpty { lines.append(footer) }
            // Cursor up over the last drawing, then each line cleared and rewritten: in place.
            var text = drawnLines > 0 ? "\u{1B}[\(drawnLines)F" : ""
            for line in lines { text += "\u{1B}[2K" + String(line.prefix(width)) + "\n" }
            drawnLines = lines.count
            write(text)
        }
    }

    private static func columns(_ fields: [String]) -> String {
        let widths = [9, 25, 9, 11, 16, 8]
        var line = ""
        for (index, field) in fields.enumerated() {
            if index < widths.count {
                line += field.padding(toLength: max(widths[index], field.count + 1), withPad: " ", startingAt: 0)
            } else {
                line += field
            }
        }
        return line
    }

    /// "1-2.10" after "1-2.9": ports in the order of the hub, not of the alphabet.
    static func portOrder(_ a: String, _ b: String) -> Bool {
        let split = { (port: String) in port.split(whereSeparator: { $0 == "-" || $0 == "." }).map { Int($0) ?? 0 } }
        return split(a).lexicographicallyPrecedes(split(b))
    }

    private static func terminalWidth() -> Int {
        var size = winsize()
        guard ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 20 else { return 120 }
        return Int(size.ws_col)
    }

    static func line(_ event: ProvisioningEvent) -> String {
        var parts: [String] = []
        if let port = event.port { parts.append(event.portName.map { "\(port) (\($0))" } ?? port) }
        if let deviceID = event.deviceID { parts.append(deviceID) }
        switch event.type {
        case .portNotPermitted: break  // the message says "not permitted"
        case .stateChanged: parts.append("→ \(event.state?.rawValue ?? "?")")
        case .deviceFinished: parts.append(event.outcome?.rawValue ?? "finished")
        default: parts.append(event.type.rawValue)
        }
        if let message = event.message { parts.append(message) }
        return parts.joined(separator: "  ")
    }

    private func write(_ text: String) {
        let data = Data(text.utf8)
        outputQueue.async { [output] in output.write(data) }
    }
}
