/// What to do about a failure: the one policy the provisioning runner, restore and the one-shot
/// commands share. Each layer's error type says which class it is in (`ClassifiedError`), so the
/// decision is made once, where the failure is understood, not again in every caller.
public enum FailureClass: String, Sendable, Hashable, CaseIterable, Codable {
    /// Transient: the same step, tried again after a pause, can succeed (a USB timeout, a
    /// re-enumeration still settling, the database restarting, a serialization conflict).
    case retryable
    /// Infrastructure a person must fix before anything can go on (database or escrow store
    /// unreachable, permission denied, disk full). Devices are held, not failed, while it lasts.
    case needsOperator = "needs_operator"
    /// This device is at fault (protected, wrong platform, corrupt key, refuses a request):
    /// it fails alone; the others go on.
    case badDevice = "bad_device"
    /// The input is wrong (pipeline, firmware image, key file, recipients): retrying cannot help.
    case badInput = "bad_input"

    /// Whether trying the same step again later can succeed without anyone changing anything.
    public var isRetryable: Bool { self == .retryable }
}

/// An error that knows its `FailureClass`.
public protocol ClassifiedError: Error {
    var failureClass: FailureClass { get }
}

extension Error {
    /// The error's class; errors that do not classify themselves are treated as bad device data
    /// (fail the one device, keep the line running), never retried blindly.
    public var failureClass: FailureClass {
        (self as? ClassifiedError)?.failureClass ?? .badDevice
    }
}
