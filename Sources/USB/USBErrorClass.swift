import CLibUSB
import FailurePolicy

extension USBError: ClassifiedError {
    public var failureClass: FailureClass {
        switch self {
        // Not there (yet): re-enumerating, or plugged in a moment later.
        case .notFound, .disconnected: .retryable
        // Another owner holds the interface; it may let go (another task finishing its step).
        // If it never does, the waiting caller's deadline turns this into an operator's problem.
        case .busy: .retryable
        // No udev rule: nothing on the station changes that by itself.
        case .accessDenied: .needsOperator
        case .libusb(_, let code, _, _):
            switch code {
            // The host cannot do this with the device at all.
            case LIBUSB_ERROR_NOT_SUPPORTED.rawValue, LIBUSB_ERROR_INVALID_PARAM.rawValue: .badDevice
            case LIBUSB_ERROR_PIPE.rawValue: .badDevice
            // I/O errors, timeouts, interrupted calls, memory pressure: worth another try.
            default: .retryable
            }
        }
    }
}
