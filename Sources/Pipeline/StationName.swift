import Foundation

/// The name a station or bench records itself under: given on the command line, else
/// KEYLINE_STATION, else the host name. One rule for provision, restore and the `keys` bench
/// commands, so one machine never records itself under two names.
public enum StationName {
    /// `given`, else a non-empty KEYLINE_STATION from `environment`, else the host name.
    public static func resolve(_ given: String?, environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let given { return given }
        if let named = environment["KEYLINE_STATION"], !named.isEmpty { return named }
        return hostName()
    }

    /// gethostname(2): no DNS lookup, unlike ProcessInfo.hostName, which can stall a station
    /// whose resolver is unreachable.
    public static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "station" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
