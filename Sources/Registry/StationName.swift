import Foundation

/// The name a station or bench records itself under: given on the command line, else
/// KEYLINE_STATION, else the host name (gethostname), for provision, restore and the `keys` bench
/// commands alike, so one machine never records itself under two names. provision alone also
/// reads a pipeline file's `station:`, after KEYLINE_STATION and before the host name.
public enum StationName {
    /// `given`, else a non-empty KEYLINE_STATION from `environment`, else the host name.
    public static func resolve(_ given: String?, environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        given ?? named(in: environment) ?? hostName()
    }

    /// A non-empty KEYLINE_STATION (an empty one, a blanked variable in a unit file, is no name).
    public static func named(in environment: [String: String]) -> String? {
        environment["KEYLINE_STATION"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// gethostname(2): no DNS lookup, unlike ProcessInfo.hostName, which can stall a station
    /// whose resolver is unreachable.
    public static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "station" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
