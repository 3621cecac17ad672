import DeviceKeys
import ParticleDevice

/// The enum case name, a stable identifier for scripts ("blankSlot"). Reflection names cases
/// with associated values; cases without them are named by the caller.
func caseName(_ value: Any, otherwise name: String = "error") -> String {
    Mirror(reflecting: value).children.first?.label ?? name
}

extension DeviceKeyError: ReportableError {
    var kind: String {
        switch self {
        case .empty: "empty"
        case .notAKey: "notAKey"
        case .encryptedPEM: "encryptedPEM"
        case .notAPrivateKey: "notAPrivateKey"
        default: caseName(self)
        }
    }
    var message: String { description }
    var exit: KeylineExit { if case .generationFailed = self { .software } else { .dataError } }
}

extension KeySlotError: ReportableError {
    var kind: String { caseName(self) }
    var message: String { description }
    var exit: KeylineExit { .dataError }
}

extension ServerKeyBlobError: ReportableError {
    var kind: String { if case .blank = self { "blank" } else { caseName(self) } }
    var message: String { description }
    var exit: KeylineExit { .dataError }
}

extension ServerAddressError: ReportableError {
    var kind: String {
        switch self {
        case .emptyHost: "emptyHost"
        case .nonPrintableHost: "nonPrintableHost"
        default: caseName(self)
        }
    }
    var message: String { description }
    var exit: KeylineExit { .dataError }
}

extension PlatformError: ReportableError {
    var kind: String { caseName(self) }
    var message: String { description }
    var exit: KeylineExit { .usage }
}
