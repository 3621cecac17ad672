import RMABench

// How the RMA bench's errors appear on the command line: kind for scripts, message for people,
// context, exit code (KeylineExit; a restore's refusals have one code each, 10–17).

extension RestoreError: ReportableError {
    public var message: String { description }
    public var context: [String: String] {
        switch self {
        case .noRegistration(let id, _), .severalRegistrations(let id, _), .backupUnavailable(let id, _, _),
             .cannotDecrypt(let id, _, _), .backupMismatch(let id, _, _, _), .platformMismatch(let id, _, _),
             .deviceProtected(let id), .readBackDiffers(let id), .registrationChanged(let id, _):
            ["device": id]
        }
    }
    public var exit: KeylineExit {
        switch self {
        case .noRegistration: .restoreNoRegistration
        case .severalRegistrations: .usage
        case .backupUnavailable: .restoreBackupUnavailable
        case .cannotDecrypt: .restoreCannotDecrypt
        case .backupMismatch: .restoreBackupMismatch
        case .platformMismatch: .restorePlatformMismatch
        case .deviceProtected: .restoreDeviceProtected
        case .readBackDiffers: .protocolError
        case .registrationChanged: .restoreRegistrationChanged
        }
    }
}

extension RestoreBatchError: ReportableError {
    public var kind: String {
        switch self {
        case .notADeviceID: "invalidBatchRow"
        case .listedTwice: "duplicateBatchRow"
        case .empty: "emptyBatch"
        case .unterminatedQuote: "invalidBatchRow"
        }
    }
    public var message: String { description }
    public var context: [String: String] {
        switch self {
        case .notADeviceID(let file, let line, _), .listedTwice(let file, let line, _), .unterminatedQuote(let file, let line):
            ["file": file, "line": String(line)]
        case .empty(let file): ["file": file]
        }
    }
    public var exit: KeylineExit { .dataError }
}

extension BenchError: ReportableError {
    public var kind: String {
        switch self {
        case .notAttached: "deviceNotAttached"
        case .noDevices: "noDevices"
        case .severalDevices: "severalDevices"
        }
    }
    public var message: String { description }
    public var exit: KeylineExit {
        switch self {
        case .notAttached: .restoreDeviceNotAttached
        case .noDevices: .unavailable
        case .severalDevices: .usage
        }
    }
}

extension BenchKeyError: ReportableError {
    public var kind: String {
        switch self {
        case .noBackup: "noBackup"
        case .productNeeded: "productNeeded"
        case .wrongAlgorithm: "wrongAlgorithm"
        }
    }
    public var message: String { description }
    public var context: [String: String] {
        switch self {
        case .noBackup(let id, let product, let fingerprint): ["device": id, "product": product, "fingerprint": fingerprint]
        case .productNeeded(let id, _), .wrongAlgorithm(let id, _, _): ["device": id]
        }
    }
    public var exit: KeylineExit {
        switch self {
        case .noBackup, .wrongAlgorithm: .dataError
        case .productNeeded: .usage
        }
    }
}

extension BenchEscrowError: ReportableError {
    public var kind: String {
        switch self {
        case .noEscrowStore: "noEscrowStore"
        case .platformNeeded: "platformNeeded"
        }
    }
    public var message: String { description }
    public var context: [String: String] {
        switch self {
        case .noEscrowStore: [:]
        case .platformNeeded(let id): ["device": id]
        }
    }
    public var exit: KeylineExit {
        switch self {
        case .noEscrowStore: .configuration
        case .platformNeeded: .usage
        }
    }
}

extension DeviceKeyCommandError: ReportableError {
    public var kind: String {
        switch self {
        case .noKey: "noKeyOnDevice"
        case .protected: "deviceProtected"
        case .readBackDiffers: "readBackDiffers"
        }
    }
    public var message: String { description }
    public var exit: KeylineExit {
        switch self {
        case .noKey: .dataError
        case .protected: .unavailable
        case .readBackDiffers: .protocolError
        }
    }
}

/// Reported as the error it wraps, with the file named in the message and the context.
