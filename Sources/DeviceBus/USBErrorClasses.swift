import FailurePolicy

// What the station does about USB failures (FailurePolicy). Cancellation is `.needsOperator`
// everywhere: it means someone stopped the run (Ctrl-C, shutdown), so the device is held where it
// is for a resume, neither retried on its own nor failed as a bad device.

extension USBTransferError: ClassifiedError {
    public var failureClass: FailureClass {
        switch self {
        // Transient: a slow answer, a re-enumeration in progress, a bus hiccup.
        case .timeout, .disconnected, .io: .retryable
        // The device refused the request: asking again gets the same answer.
        case .stall: .badDevice
        case .cancelled: .needsOperator
        }
    }
}

extension USBLocatorError: ClassifiedError {
    public var failureClass: FailureClass {
        switch self {
        // The device may still be re-enumerating (a slow hub, a slow boot).
        case .timedOut: .retryable
        // What is left after the locator has retried busy and settling opens until its deadline:
        // permission denied (a udev rule) or another program holding the device for the whole
        // wait. Both need a person.
        case .openFailed: .needsOperator
        case .cancelled: .needsOperator
        }
    }
}
