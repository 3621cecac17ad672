import Foundation

/// One Server-Sent Event.
struct ServerSentEvent: Sendable, Equatable {
    var event: String
    var data: String

    /// The wire form: `event:` then one `data:` line per line of `data`, then a blank line.
    var wire: String {
        var out = "event: \(event)\n"
        for line in data.split(separator: "\n", omittingEmptySubsequences: false) {
            out += "data: \(line.replacingOccurrences(of: "\r", with: ""))\n"
        }
        return out + "\n"
    }
}

/// Hands each published event to every open viewer's stream. A viewer holds at most
/// `bufferLimit` undelivered events: one that falls further behind (a stalled browser, a slow
/// link) is dropped — its stream ends, and the browser's EventSource reconnects and gets the
/// whole floor afresh — so memory never grows with a slow viewer.
final class EventFanOut: @unchecked Sendable {
    private let lock = NSLock()
    private var viewers: [UInt64: AsyncStream<ServerSentEvent>.Continuation] = [:]
    private var lastID: UInt64 = 0
    private var closed = false
    private var droppedCount = 0
    let bufferLimit: Int

    init(bufferLimit: Int = 16) {
        self.bufferLimit = bufferLimit
    }

    /// A new viewer's stream, starting with `first` (nil once the fan-out is closed).
    func subscribe(first: ServerSentEvent?) -> AsyncStream<ServerSentEvent>? {
        let (stream, continuation) = AsyncStream.makeStream(of: ServerSentEvent.self,
                                                            bufferingPolicy: .bufferingOldest(bufferLimit))
        let id: UInt64? = lock.withLock {
            guard !closed else { return nil }
            lastID += 1
            viewers[lastID] = continuation
            return lastID
        }
        guard let id else { return nil }
        continuation.onTermination = { [weak self] _ in self?.remove(id) }
        if let first { continuation.yield(first) }
        return stream
    }

    func publish(_ event: ServerSentEvent) {
        let current = lock.withLock { viewers }
        for (id, continuation) in current {
            switch continuation.yield(event) {
            case .enqueued: break
            case .dropped:
                lock.withLock { droppedCount += 1 }
                remove(id)
                continuation.finish()
            case .terminated: remove(id)
            @unknown default: break
            }
        }
    }

    /// Ends every viewer's stream and refuses new ones (shutdown).
    func close() {
        let current = lock.withLock { () -> [AsyncStream<ServerSentEvent>.Continuation] in
            closed = true
            defer { viewers.removeAll() }
            return Array(viewers.values)
        }
        current.forEach { $0.finish() }
    }

    var viewerCount: Int { lock.withLock { viewers.count } }
    /// Viewers dropped for falling behind, since start.
    var dropped: Int { lock.withLock { droppedCount } }

    private func remove(_ id: UInt64) {
        _ = lock.withLock { viewers.removeValue(forKey: id) }
    }
}
