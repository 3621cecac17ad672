import DeviceKeys
import ParticlePlatform

/// The enum case name, a stable identifier for scripts ("blankSlot"). Reflection names cases
/// with associated values; cases without them are named by the caller.
public func caseName(_ value: Any, otherwise name: String = "error") -> String {
    Mirror(reflecting: value).children.first?.label ?? name
}

extension DeviceKeyError: ReportableError {
    public var kind: String {
        switch self {
        case .empty: "empty"
        case .notAKey: "notAKey"
        case .encryptedPEM: "encryptedPEM"
        case .notAPrivateKey: "notAPrivateKey"
        default: caseName(self)
        }
    }
    public var message: String { description }
    public var exit: KeylineExit { if case .generationFailed = self { .software } else { .dataError } }
}

extension KeySlotError: ReportableError {
    public var kind: String { caseName(self) }
    public var message: String { description }
    public var exit: KeylineExit { .dataError }
}

extension ServerKeyBlobError: ReportableError {
    public var kind: String { if case .blank = self { "blank" } else { caseName(self) } }
    public var message: String { description }
    public var exit: KeylineExit { .dataError }
}

extension ServerAddressError: ReportableError {
    public var kind: String {
        switch self {
        case .emptyHost: "emptyHost"
        case .nonPrintableHost: "nonPrintableHost"
        default: caseName(self)
        }
    }
    public var message: String { description }
    public var exit: KeylineExit { .dataError }
}

extension PlatformError: ReportableError {
    public var kind: String { caseName(self) }
    public var message: String { description }
    public var exit: KeylineExit { .usage }
}

extension ServerKeyFileError: ReportableError {
    public var kind: String { "unknownBlobSize" }
    public var message: String { description }
    public var exit: KeylineExit { .dataError }
}
