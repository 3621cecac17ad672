import Foundation
import Registry

/// One line of `keyline station check` (issue 23): what was checked, whether it passed, what was
/// found, and what to do about a failure. Messages name things (ports, stores, logins) and never
/// hold a token or key material.
public struct StationCheck: Sendable, Equatable, Codable {
    public enum Name: String, Sendable, Equatable, Codable, CaseIterable {
        case pipeline, usb, registry, store, recipients, cloud, clock
    }

    public enum Status: String, Sendable, Equatable, Codable {
        case pass, fail
        /// Not checked, and not a failure: nothing to check here (no cloud uploads), or an earlier
        /// check it needs failed (the message says which).
        case skip
    }

    public var check: Name
    public var status: Status
    public var message: String
    /// What to do, for a failure.
    public var hint: String?

    public init(_ check: Name, _ status: Status, _ message: String, hint: String? = nil) {
        self.check = check
        self.status = status
        self.message = message
        self.hint = hint
    }

    static func pass(_ check: Name, _ message: String) -> StationCheck { StationCheck(check, .pass, message) }
    static func fail(_ check: Name, _ message: String, hint: String? = nil) -> StationCheck {
        StationCheck(check, .fail, message, hint: hint)
    }
    static func skip(_ check: Name, _ message: String) -> StationCheck { StationCheck(check, .skip, message) }
}

/// Every check of one run, in order.
public struct StationCheckReport: Sendable, Equatable, Codable {
    public var station: String?
    public var checks: [StationCheck]

    public var passed: Bool { !checks.contains { $0.status == .fail } }

    public func check(_ name: StationCheck.Name) -> StationCheck? { checks.first { $0.check == name } }
}

/// What `keyline station check` is asked: the pipeline the shift will run, the station's settings
/// that win over it (as `keyline provision` takes them), and the clock tolerance.
public struct StationCheckRequest: Sendable {
    public var pipeline: String
    public var environment: [String: String]
    public var overrides: PipelineOverrides
    /// How far the station's clock may be from the database's (default 5 s).
    public var clockTolerance: Duration

    public static let defaultClockTolerance: Duration = .seconds(5)

    /// `station` falls back to KEYLINE_STATION, then the pipeline's `station:`, then the host name.
    public init(pipeline: String, environment: [String: String], database: String? = nil, store: String? = nil,
                recipientsFile: String? = nil, station: String? = nil,
                clockTolerance: Duration = StationCheckRequest.defaultClockTolerance) {
        self.pipeline = pipeline
        self.environment = environment
        overrides = PipelineOverrides(database: database, store: store, recipientsFile: recipientsFile,
                                      station: station ?? StationName.named(in: environment))
        self.clockTolerance = clockTolerance
    }
}
