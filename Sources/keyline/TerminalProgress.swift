import Foundation

/// Progress of a long check on standard error, only when it is a terminal; at most 5 times a second.
final class TerminalProgress {
    private let enabled = isatty(STDERR_FILENO) == 1
    private let label: String
    private let total: Int
    private var done = 0
    private var last = Date.distantPast
    private let started = Date()

    init(_ label: String, total: Int) {
        self.label = label
        self.total = total
    }

    func advance(by count: Int) {
        done += count
        guard enabled, Date().timeIntervalSince(last) >= 0.2 else { return }
        last = Date()
        let rate = Double(done) / max(Date().timeIntervalSince(started), 0.001)
        let count = total > 0 ? "\(done)/\(total) (\(min(100, done * 100 / total))%)" : "\(done)"
        FileHandle.standardError.write(Data("\r\(label): \(count), \(Int(rate))/s   ".utf8))
    }

    func finish() {
        guard enabled, done > 0 else { return }
        FileHandle.standardError.write(Data("\r\(label): \(done) done\u{1B}[K\n".utf8))
    }
}
