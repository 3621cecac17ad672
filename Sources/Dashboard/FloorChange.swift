import Foundation

/// What a `keyline_floor` notification may pass on to viewers. Any login can `NOTIFY` the channel
/// with any text (PostgreSQL checks no privilege for it), so the payload is never relayed as it
/// came: only these fields, each checked, are re-serialised; anything else is dropped.
enum FloorChange {
    static let tables: Set<String> = ["job_devices", "job_device_steps", "jobs", "cloud_uploads", "events", "station_status"]

    /// The checked payload as JSON, or nil when it is not one the triggers of 0014 send.
    static func sanitized(_ payload: String) -> String? {
        guard payload.utf8.count <= 2048,
              let object = try? JSONSerialization.jsonObject(with: Data(payload.utf8)) as? [String: Any],
              let table = object["table"] as? String, tables.contains(table) else { return nil }
        var clean: [String: Any] = ["table": table]
        if let job = object["job"] as? NSNumber {
            let value = job.int64Value
            guard value > 0, NSNumber(value: value) == job else { return nil }
            clean["job"] = value
        }
        if let device = object["device"] as? String {
            guard device.utf8.count == 24, device.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else {
                return nil
            }
            clean["device"] = device
        }
        if let station = object["station"] as? String {
            guard (1...200).contains(station.count), !station.unicodeScalars.contains(where: { $0.properties.generalCategory == .control })
            else { return nil }
            clean["station"] = station
        }
        if let kind = object["kind"] as? String {
            guard (1...64).contains(kind.utf8.count), kind.utf8.first.map({ (0x61...0x7a).contains($0) }) == true,
                  kind.utf8.allSatisfy({ (0x61...0x7a).contains($0) || (0x30...0x39).contains($0) || "_.-".utf8.contains($0) })
            else { return nil }
            clean["kind"] = kind
        }
        guard let data = try? JSONSerialization.data(withJSONObject: clean, options: [.sortedKeys]) else { return nil }
        return String(decoding: data, as: UTF8.self)
    }
}
