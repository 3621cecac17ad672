import Foundation

/// Faults the simulated cloud injects (`keyline-sim cloud --faults SPEC`, or at runtime with
/// `POST /sim/faults`). SPEC is comma-separated items:
/// - `rate-limit=N[:SECONDS]`: the next N API calls answer 429 with `Retry-After: SECONDS` (default 1);
/// - `error=N[:STATUS]`: the next N API calls answer STATUS (500–599, default 503);
/// - `slow=SECONDS`: every API call is answered SECONDS (real time, fractions allowed) late;
/// - `down=SECONDS`: for SECONDS from now every connection, API or device, is closed unanswered
///   (what a client sees of an unreachable cloud); `down=0` brings it back;
/// - `none`: no faults.
/// Counted faults (rate-limit, error) apply to API calls only, never to device connections.
public struct SimulatedCloudFaults: Sendable, Equatable, Codable {
    public var rateLimited = 0
    public var retryAfterSeconds = 1
    public var serverErrors = 0
    public var serverErrorStatus = 503
    public var slowSeconds: Double = 0
    /// Until when the cloud is down (wall clock, so `/sim/faults` can show it).
    public var downUntil: Date?

    public init() {}

    /// The largest delay or outage a spec may ask for: an hour is longer than any test or demo.
    public static let maximumSeconds: Double = 3600

    /// Parses SPEC (see the type's comment); `now` starts a `down=` period.
    public static func parse(_ spec: String, now: Date = Date()) throws(SimulatedCloudFaultError) -> SimulatedCloudFaults {
        var faults = SimulatedCloudFaults()
        for raw in spec.split(separator: ",") {
            let item = raw.trimmingCharacters(in: .whitespaces)
            if item.isEmpty || item == "none" { continue }
            let pair = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard pair.count == 2 else { throw .init(item: item, reason: "needs a value (NAME=VALUE)") }
            let values = pair[1].split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            func count(_ text: String) throws(SimulatedCloudFaultError) -> Int {
                guard let n = Int(text), n >= 0, n <= 1_000_000 else { throw .init(item: item, reason: "\"\(text)\" is not a count (0 to 1000000)") }
                return n
            }
            func seconds(_ text: String) throws(SimulatedCloudFaultError) -> Double {
                guard let s = Double(text), s.isFinite, s >= 0, s <= maximumSeconds else {
                    throw .init(item: item, reason: "\"\(text)\" is not seconds (0 to \(Int(maximumSeconds)))")
                }
                return s
            }
            switch pair[0] {
            case "rate-limit":
                guard values.count <= 2 else { throw .init(item: item, reason: "is not rate-limit=N[:SECONDS]") }
                faults.rateLimited = try count(values[0])
                if values.count == 2 {
                    let retry = try count(values[1])
                    guard retry <= Int(maximumSeconds) else { throw .init(item: item, reason: "Retry-After is at most \(Int(maximumSeconds))") }
                    faults.retryAfterSeconds = retry
                }
            case "error":
                guard values.count <= 2 else { throw .init(item: item, reason: "is not error=N[:STATUS]") }
                faults.serverErrors = try count(values[0])
                if values.count == 2 {
                    guard let status = Int(values[1]), (500...599).contains(status) else {
                        throw .init(item: item, reason: "the status must be 500 to 599")
                    }
                    faults.serverErrorStatus = status
                }
            case "slow":
                guard values.count == 1 else { throw .init(item: item, reason: "is not slow=SECONDS") }
                faults.slowSeconds = try seconds(values[0])
            case "down":
                guard values.count == 1 else { throw .init(item: item, reason: "is not down=SECONDS") }
                let duration = try seconds(values[0])
                faults.downUntil = duration > 0 ? now.addingTimeInterval(duration) : nil
            default:
                throw .init(item: item, reason: "is not a cloud fault (rate-limit=N[:SECONDS], error=N[:STATUS], slow=SECONDS, down=SECONDS, none)")
            }
        }
        return faults
    }

    /// Whether the cloud is down at `now`.
    public func isDown(at now: Date = Date()) -> Bool { downUntil.map { now < $0 } ?? false }

    /// The spec that gives these faults now (for `GET /sim/faults`).
    public func spec(now: Date = Date()) -> String {
        var items: [String] = []
        if rateLimited > 0 { items.append("rate-limit=\(rateLimited):\(retryAfterSeconds)") }
        if serverErrors > 0 { items.append("error=\(serverErrors):\(serverErrorStatus)") }
        if slowSeconds > 0 { items.append("slow=\(slowSeconds)") }
        if let downUntil, now < downUntil { items.append("down=\(String(format: "%.1f", downUntil.timeIntervalSince(now)))") }
        return items.isEmpty ? "none" : items.joined(separator: ",")
    }
}

/// A `--faults` item (or a `/sim/faults` spec) the simulated cloud cannot read.
public struct SimulatedCloudFaultError: Error, Sendable, Equatable, CustomStringConvertible {
    public var item: String
    public var reason: String
    public var description: String { "cloud fault \"\(item)\" \(reason)" }
}
