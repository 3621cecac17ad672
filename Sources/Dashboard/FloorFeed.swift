import Foundation
import Registry

/// The dashboard's one view of the registry for every viewer: a single LISTEN connection
/// (`NotificationListener`, channel `keyline_floor`) and the shared pool. A burst of state writes
/// becomes one floor read and one `floor` event to all viewers (at most one read per
/// `coalescing`), plus a `change` event per notification for pages showing one job. The floor is
/// also re-read every `tick`, for what time alone changes (a station gone silent, the shift).
final class FloorFeed: @unchecked Sendable {
    static let channel = "keyline_floor"

    let registry: RegistryDatabase
    let listener: NotificationListener
    let fanOut: EventFanOut
    let coalescing: Duration
    let tick: Duration
    private let lock = NSLock()
    private var latest: FloorSnapshot?
    private var latestHTML: String?
    private var registryDown: String?
    private var dirty = true
    private var tasks: [Task<Void, Never>] = []
    /// Ends at the listener's first word (LISTEN in force, or the registry unreachable).
    private let firstContact = AsyncStream<Void>.makeStream(of: Void.self)
    /// Done once `firstContact` ended or `firstContactLimit` passed.
    private var listening: Task<Void, Never>?

    init(registry: RegistryDatabase, listenerSettings: ConnectionSettings, fanOut: EventFanOut,
         coalescing: Duration = .milliseconds(100), tick: Duration = .seconds(5)) {
        self.registry = registry
        self.listener = NotificationListener(settings: listenerSettings, channel: Self.channel)
        self.fanOut = fanOut
        self.coalescing = coalescing
        self.tick = tick
    }

    /// Starts listening. A viewer's stream starts only after `listeningStarted()`.
    func start(firstContactLimit: Duration = .seconds(15)) {
        listener.start()
        let updates = listener.updates
        let contact = firstContact.continuation
        let consumer = Task { [self] in
            for await update in updates {
                if case .notification = update {} else { contact.finish() }
                switch update {
                case .notification(let payload):
                    // Relayed only as checked fields (FloorChange); the floor is re-read either way.
                    if let change = FloorChange.sanitized(payload) {
                        fanOut.publish(ServerSentEvent(event: "change", data: change))
                    }
                    markDirty()
                case .connected:
                    lock.withLock { registryDown = nil }
                    fanOut.publish(ServerSentEvent(event: "registry", data: "{\"reachable\":true}"))
                    markDirty()
                case .disconnected(let reason):
                    let first = lock.withLock { () -> Bool in
                        defer { registryDown = reason }
                        return registryDown == nil
                    }
                    if first { fanOut.publish(ServerSentEvent(event: "registry", data: "{\"reachable\":false}")) }
                    await refresh()
                }
            }
        }
        let refresher = Task { [self] in
            var sinceRead = Duration.zero
            while !Task.isCancelled {
                let due = lock.withLock { () -> Bool in
                    defer { dirty = false }
                    return dirty
                } || sinceRead >= tick
                if due {
                    await refresh()
                    sinceRead = .zero
                }
                try? await Task.sleep(for: coalescing)
                sinceRead += coalescing
            }
        }
        lock.withLock { tasks = [consumer, refresher] }
        let stream = firstContact.stream
        let started = Task {
            let limit = Task {
                try? await Task.sleep(for: firstContactLimit)
                contact.finish()
            }
            for await _ in stream {}
            limit.cancel()
        }
        lock.withLock { listening = started }
    }

    /// Returns once LISTEN is in force (or the registry was found away, or the first contact's
    /// limit passed): an event stream subscribed before that would miss the changes written in
    /// between, their notifications sent before anyone listened.
    func listeningStarted() async {
        await lock.withLock { listening }?.value
    }

    func stop() {
        firstContact.continuation.finish()  // a stream still waiting for it is refused at once
        listener.stop()
        lock.withLock { tasks }.forEach { $0.cancel() }
        fanOut.close()
    }

    /// The floor fragment as last rendered (read now if never).
    func currentFragment() async -> String {
        if let html = lock.withLock({ latestHTML }) { return html }
        await refresh()
        return lock.withLock { latestHTML } ?? ""
    }

    /// The event a new viewer starts with.
    func currentEvent() -> ServerSentEvent? {
        lock.withLock { latestHTML }.map { ServerSentEvent(event: "floor", data: $0) }
    }

    private func markDirty() {
        lock.withLock { dirty = true }
    }

    /// Reads the floor once and sends it to every viewer if it changed.
    func refresh() async {
        var snapshot: FloorSnapshot
        do {
            snapshot = try await FloorSnapshot.load(from: registry)
            if let down = lock.withLock({ registryDown }) {
                snapshot = .unreachable("the notification connection is down (\(down))", previous: snapshot)
            }
        } catch {
            snapshot = .unreachable("\(error)", previous: lock.withLock { latest })
        }
        let html = FloorPage.fragment(snapshot)
        let changed = lock.withLock { () -> Bool in
            latest = snapshot
            defer { latestHTML = html }
            return latestHTML != html
        }
        if changed { fanOut.publish(ServerSentEvent(event: "floor", data: html)) }
    }
}
