import Audit
import Foundation
import Registry

/// The floor (`/`): alarms, then per station its job, shift figures and a tile per port.
/// Stable hooks: `#alarms [data-alarm=store|registry|cloud|port-failures|silent]`, `.station[data-station]`,
/// `.tile[data-station][data-port][data-state=idle|running|done|failed|not-permitted][data-step]`,
/// `.stepper li[data-step]`, `.reason`, `[data-figure]`.
enum FloorPage {
    static func page(_ snapshot: FloorSnapshot) -> String {
        HTMLPage.layout(title: "Floor", page: "floor", content: "<div id=\"floor\">\(fragment(snapshot))</div>")
    }

    /// What `event: floor` carries and `#floor` holds.
    static func fragment(_ snapshot: FloorSnapshot) -> String {
        let e = HTMLText.escaped
        var out = "<section id=\"alarms\">"
        for alarm in snapshot.alarms {
            out += "<div class=\"alarm\" data-alarm=\"\(e(alarm.kind))\""
            if let station = alarm.station { out += " data-station=\"\(e(station))\"" }
            if let port = alarm.port { out += " data-port=\"\(e(port))\"" }
            out += ">\(e(alarm.message))</div>"
        }
        out += "</section>\n"
        out += "<p class=\"figures\" id=\"shift\" data-shift-start=\"\(iso(snapshot.shift.start))\">shift \(e(snapshot.shift.label)) · "
            + "as of <time id=\"taken-at\" datetime=\"\(iso(snapshot.takenAt))\">\(iso(snapshot.takenAt))</time></p>\n"
        if snapshot.stations.isEmpty { out += "<p id=\"no-stations\">No station has run a job in the last day.</p>\n" }
        for station in snapshot.stations { out += self.station(station, snapshot: snapshot) }
        return out
    }

    static func station(_ station: FloorSnapshot.Station, snapshot: FloorSnapshot) -> String {
        let e = HTMLText.escaped
        var out = "<section class=\"station\" data-station=\"\(e(station.name))\" id=\"station-\(e(slug(station.name)))\">\n"
        out += "<h2>\(e(station.name))"
        if let job = station.job {
            out += " · <a href=\"/jobs/\(job.id)\" data-job=\"\(job.id)\" data-job-status=\"\(e(job.status.rawValue))\">job \(job.id)</a>"
                + " \(e(job.pipeline)) · \(e(job.productID)) · \(e(job.status.rawValue))"
        } else {
            out += " · no job"
        }
        out += "</h2>\n"
        let hours = max(snapshot.takenAt.timeIntervalSince(snapshot.shift.start) / 3600, 1.0 / 60)
        let current = (done: station.current?.done ?? 0, failed: station.current?.failed ?? 0)
        let previous = (done: station.previous?.done ?? 0, failed: station.previous?.failed ?? 0)
        out += "<p class=\"figures\">"
            + "this shift: <span data-figure=\"done\">\(current.done)</span> done, "
            + "<span data-figure=\"failed\">\(current.failed)</span> failed, "
            + "<span data-figure=\"per-hour\">\(String(format: "%.1f", Double(current.done) / hours))</span>/h, "
            + "first-pass yield <span data-figure=\"yield\">\(yield(station.current))</span>"
            + " · last shift: <span data-figure=\"previous-done\">\(previous.done)</span> done, "
            + "<span data-figure=\"previous-per-hour\">\(String(format: "%.1f", Double(previous.done) / 8))</span>/h, "
            + "yield <span data-figure=\"previous-yield\">\(yield(station.previous))</span>"
        if let heartbeat = station.heartbeat {
            out += " · heartbeat <span data-figure=\"heartbeat-age\">\(Int(heartbeat.secondsSinceSeen))</span> s ago, store "
                + "<span data-figure=\"store\" data-store-state=\"\(e(heartbeat.storeState))\">\(e(heartbeat.storeState))</span>"
        }
        out += "</p>\n<div class=\"tiles\">\n"
        for tile in station.tiles { out += self.tile(tile, station: station.name) }
        out += "</div>\n</section>\n"
        return out
    }

    static func tile(_ tile: FloorSnapshot.Tile, station: String) -> String {
        let e = HTMLText.escaped
        var out = "<div class=\"tile\" data-station=\"\(e(station))\" data-port=\"\(e(tile.port))\" data-state=\"\(tile.state.rawValue)\""
        if let step = tile.step { out += " data-step=\"\(step.rawValue)\"" }
        if let device = tile.device { out += " data-device=\"\(e(device.deviceID))\"" }
        out += ">\n<strong>\(e(tile.name ?? tile.port))</strong>"
        if tile.name != nil { out += " <span class=\"mono\">\(e(tile.port))</span>" }
        if let device = tile.device {
            out += "<br><a class=\"mono\" href=\"/jobs/\(device.jobID)#device-\(e(device.deviceID))\">\(e(device.deviceID))</a>"
            out += stepper(tile, device: device)
            if device.state == "failed" {
                out += "<span class=\"reason\" data-reason>\(e(tile.step?.label ?? "failed")): \(e(device.lastError ?? "failed"))</span>"
            }
        } else if let refusal = tile.notPermitted {
            out += "<br><span class=\"reason\" data-reason>not permitted: this port is outside the jig's allow-list"
                + (refusal.deviceID.map { " (device \(e($0)) left alone)" } ?? "") + "</span>"
        } else {
            out += "<br><span class=\"idle\">empty</span>"
        }
        return out + "\n</div>\n"
    }

    static func stepper(_ tile: FloorSnapshot.Tile, device: FloorDevice) -> String {
        let position = tile.step.flatMap { FloorStep.allCases.firstIndex(of: $0) } ?? 0
        var out = "<ol class=\"stepper\">"
        for (index, step) in FloorStep.allCases.enumerated() {
            var status: String
            if step == .cloud {
                // The cloud upload is queued at registration and sent by the outbox on its own time.
                switch device.cloudState {
                case "sent": status = "passed"
                case "parked": status = "failed"
                case "pending": status = "pending"
                default: status = index < position ? "passed" : "todo"
                }
            } else if index < position || tile.state == .done {
                status = "passed"
            } else if index == position {
                status = tile.state == .failed ? "failed" : "current"
            } else {
                status = "todo"
            }
            out += "<li data-step=\"\(step.rawValue)\" class=\"\(status)\">\(step.label)</li>"
        }
        return out + "</ol>"
    }

    static func yield(_ output: StationOutput?) -> String {
        guard let output else { return "–" }
        let finished = output.done + output.failed
        guard finished > 0 else { return "–" }
        return "\(Int((Double(output.firstPass) * 100 / Double(finished)).rounded()))%"
    }

    static func iso(_ date: Date) -> String { date.formatted(.iso8601) }

    /// A station name as an id: letters, digits and `-` only.
    static func slug(_ name: String) -> String {
        String(name.unicodeScalars.map { CharacterSet.alphanumerics.contains($0) && $0.isASCII ? Character($0) : "-" })
    }
}
