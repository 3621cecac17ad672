import FailurePolicy

/// An escrow request whose values do not hold up before any key or backup is touched.
public enum EscrowRequestError: Error, Sendable, Equatable, CustomStringConvertible {
    /// `--device-id` is not a device ID of the platform (as typed; the prefix some platforms' IDs start with).
    case invalidDeviceID(String, platform: String, prefix: String?)
    /// A backup's SHA-256 is not the one the registry recorded.
    case checksumMismatch(file: String, expected: String, actual: String)

    public var description: String {
        switch self {
        case .invalidDeviceID(let deviceID, let platform, let prefix):
            "\(deviceID) is not a \(platform) device ID (24 hex digits\(prefix.map { ", starting \($0)" } ?? ""))"
        case .checksumMismatch(let file, let expected, let actual):
            "\(file): SHA-256 is \(actual), not the recorded \(expected): the backup was modified, damaged or replaced"
        }
    }
}

extension EscrowRequestError: ClassifiedError {
    /// A damaged backup concerns that one device's key, as the store's own checksum mismatch does.
    public var failureClass: FailureClass {
        switch self {
        case .invalidDeviceID: .badInput
        case .checksumMismatch: .badDevice
        }
    }
}
