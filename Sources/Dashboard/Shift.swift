import Foundation

/// A production shift: 8 hours from 06:00, 14:00 or 22:00 UTC (the registry's clock, in UTC).
struct Shift: Sendable, Equatable {
    static let length: TimeInterval = 8 * 3600
    /// The first shift of a day starts this long after midnight UTC.
    static let offset: TimeInterval = 6 * 3600

    let start: Date
    var end: Date { start.addingTimeInterval(Self.length) }
    var previous: Shift { Shift(start: start.addingTimeInterval(-Self.length)) }

    /// The shift `date` falls in.
    static func containing(_ date: Date) -> Shift {
        let seconds = date.timeIntervalSince1970 - offset
        let index = (seconds / length).rounded(.down)
        return Shift(start: Date(timeIntervalSince1970: index * length + offset))
    }

    /// `06:00–14:00 UTC`.
    var label: String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "HH:mm"
        return "\(formatter.string(from: start))–\(formatter.string(from: end)) UTC"
    }
}
