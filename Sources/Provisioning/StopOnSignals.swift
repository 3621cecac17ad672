import Dispatch
import Foundation

/// Ctrl-C (SIGINT) and SIGTERM during a run: the first requests `stop` (running steps finish, no
/// new one starts) and calls `stopping`; any later one calls `quitting`, which ends the process
/// (a resume still works: every state that counts is in the registry). The signals' default
/// actions are replaced by dispatch sources on a queue of their own until `cancel()`.
public final class StopOnSignals: @unchecked Sendable {
    private let sources: [DispatchSourceSignal]
    private let numbers: [Int32]

    public init(_ stop: StopSignal, signals: [Int32] = [SIGINT, SIGTERM],
                stopping: @escaping @Sendable () -> Void, quitting: @escaping @Sendable () -> Never) {
        let queue = DispatchQueue(label: "keyline.signals")
        numbers = signals
        sources = signals.map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler {
                if stop.isStopRequested {
                    quitting()
                } else {
                    stop.requestStop()
                    stopping()
                }
            }
            source.resume()
            return source
        }
    }

    public func cancel() {
        sources.forEach { $0.cancel() }
        numbers.forEach { signal($0, SIG_DFL) }
    }
}
