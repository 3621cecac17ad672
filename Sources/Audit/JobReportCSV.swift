import Foundation

/// `keyline report --format csv` and the dashboard's `/jobs/{id}.csv`: one function, so the two
/// are byte-identical.
extension JobReport {
    /// Seconds as the report prints them: two decimals.
    public static func seconds(_ value: Double) -> String { String(format: "%.2f", value) }

    /// One line per step (a device without steps gets one line), device fields repeated.
    public func csv() -> String {
        var out = "job,port,device_id,platform,outcome,device_attempts,reason,step,step_start_s,step_seconds,step_attempts,step_outcome,step_reason\n"
        for device in devices {
            let base = [String(job), device.port, device.deviceID, device.platform ?? "", device.outcome,
                        String(device.attempts), device.reason ?? ""]
            if device.steps.isEmpty { out += Self.csvLine(base + ["", "", "", "", "", ""]) }
            for step in device.steps {
                out += Self.csvLine(base + [step.step, Self.seconds(step.start), Self.seconds(step.seconds),
                                            String(step.attempts), step.outcome, step.reason ?? ""])
            }
        }
        return out
    }

    /// RFC 4180: fields with a comma, quote or line break are quoted, quotes doubled.
    static func csvLine(_ fields: [String]) -> String {
        fields.map { field in
            field.utf8.contains(where: { $0 == 0x2c || $0 == 0x22 || $0 == 0x0a || $0 == 0x0d })
                ? "\"" + field.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : field
        }.joined(separator: ",") + "\n"
    }
}
