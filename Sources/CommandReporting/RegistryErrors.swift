import Registry

// How the registry's errors appear on the command line: kind for scripts, message for people,
// context, exit code (KeylineExit).

/// A PostgreSQL or libpq error as the CLI reports it (PostgresError's own `kind` is its enum).
public struct DatabaseFailure: ReportableError {
    public var error: PostgresError

    public init(_ error: PostgresError) {
        self.error = error
    }

    public var kind: String {
        switch error.kind {
        case .invalidSettings: "databaseSettingsInvalid"
        case .connectionFailed:
            error.sqlState?.hasPrefix("28") == true ? "databaseLoginRefused"
                : error.sqlState == "3D000" ? "databaseMissing" : "databaseUnreachable"
        case .connectionLost: "databaseConnectionLost"
        case .commitOutcomeUnknown: "databaseCommitOutcomeUnknown"
        case .server: error.isInsufficientPrivilege ? "databasePermissionDenied" : "databaseError"
        case .decoding: "databaseResultUnreadable"
        case .transactionAborted: "databaseTransactionAborted"
        }
    }

    public var message: String { error.description }

    public var context: [String: String] {
        var context: [String: String] = [:]
        if let sqlState = error.sqlState { context["sqlState"] = sqlState }
        if let constraint = error.constraint { context["constraint"] = constraint }
        if let table = error.table { context["table"] = table }
        return context
    }

    public var exit: KeylineExit {
        if error.isConfigurationError { return .configuration }
        if error.isConnectionLoss || error.kind == .commitOutcomeUnknown { return .tempFail }
        if error.isInsufficientPrivilege { return .noPermission }
        return .failure
    }

    /// What the exit codes mean for database and registry errors, for the commands' help.
    public static let helpText = """
        DATABASE EXIT CODES
          65  key conflict that retrying will not resolve: the public key belongs to
              another device (fingerprintConflict), or the device already has an
              active key (activeKeyConflict: supersede or revoke that one first), or
              the escrow object is already recorded (escrowObjectExists: write-once)
          75  database unreachable or connection lost: retry
          77  the login lacks the privilege (use a keyline_station/_rma/_auditor login)
          78  malformed DATABASE_URL, login refused (SQLSTATE 28xxx: password, role,
              pg_hba.conf) or no such database (3D000): fix the settings
        """
}

extension MigrationError: ReportableError {
    public var kind: String {
        switch self {
        case .unreadableDirectory, .unreadableFile: "schemaUnreadable"
        case .badFileName, .duplicateVersion: "schemaMalformed"
        case .checksumMismatch: "migrationChanged"
        case .unknownAppliedVersion: "migrationUnknown"
        case .failed: "migrationFailed"
        }
    }

    public var message: String { description }

    public var context: [String: String] {
        switch self {
        case .unreadableDirectory(let directory), .badFileName(_, let directory): ["file": directory]
        case .unreadableFile(let path): ["file": path]
        case .duplicateVersion(let version, _, _), .checksumMismatch(let version, _, _, _),
             .unknownAppliedVersion(let version, _):
            ["version": String(version)]
        case .failed(let version, _, let error):
            ["version": String(version)].merging(DatabaseFailure(error).context) { first, _ in first }
        }
    }

    public var exit: KeylineExit {
        switch self {
        case .unreadableDirectory, .unreadableFile: .noInput
        case .badFileName, .duplicateVersion: .dataError
        case .checksumMismatch, .unknownAppliedVersion: .configuration
        case .failed(_, _, let error):
            error.isConfigurationError ? .configuration : error.isConnectionLoss ? .tempFail : .dataError
        }
    }
}

extension RegistryError: ReportableError {
    public var kind: String {
        switch self {
        case .activeKeyConflict: "activeKeyConflict"
        case .fingerprintConflict: "fingerprintConflict"
        case .escrowObjectMismatch: "escrowObjectMismatch"
        case .escrowObjectExists: "escrowObjectExists"
        case .notEscrowed: "notEscrowed"
        case .stateConflict: "stateConflict"
        case .invalidTransition: "invalidTransition"
        case .keyFingerprintRequired: "keyFingerprintRequired"
        case .keyFingerprintMismatch: "keyFingerprintMismatch"
        case .escrowIntentWithoutJob: "escrowIntentWithoutJob"
        case .noEscrowIntent: "noEscrowIntent"
        case .escrowIntentCommitted: "escrowIntentCommitted"
        case .noBenchEscrowIntent: "noBenchEscrowIntent"
        case .keyDoctorInterrupted: "keyDoctorInterrupted"
        case .noActiveKey: "noActiveKey"
        case .registrationNotActive: "registrationNotActive"
        case .productExists: "productExists"
        case .unknownProduct: "unknownProduct"
        case .unknownJob: "unknownJob"
        case .unknownRegistration: "unknownRegistration"
        case .schemaBehind: "registrySchemaBehind"
        case .permissionDenied: "databasePermissionDenied"
        case .database(let error): DatabaseFailure(error).kind
        }
    }

    public var message: String { description }

    public var context: [String: String] {
        switch self {
        case .activeKeyConflict(let product, let device, _, let fingerprint):
            ["product": product, "device": device, "fingerprint": fingerprint]
        case .fingerprintConflict(let fingerprint, let device, _, _):
            ["device": device, "fingerprint": fingerprint]
        case .escrowObjectMismatch(let id, let product, let device, let fingerprint):
            ["escrowObject": String(id), "product": product, "device": device, "fingerprint": fingerprint]
        case .escrowObjectExists(let store, let key), .noBenchEscrowIntent(let store, let key): ["store": store, "object": key]
        case .notEscrowed(let job, let device, _), .stateConflict(let job, let device, _, _),
             .invalidTransition(let job, let device, _, _), .keyFingerprintRequired(let job, let device),
             .keyFingerprintMismatch(let job, let device, _, _), .noEscrowIntent(let job, let device),
             .escrowIntentCommitted(let job, let device, _):
            ["job": String(job), "device": device]
        case .escrowIntentWithoutJob(let device), .keyDoctorInterrupted(let device): ["device": device]
        case .noActiveKey(let product, let device): ["product": product, "device": device]
        case .productExists(let product), .unknownProduct(let product): ["product": product]
        case .unknownJob(let job): ["job": String(job)]
        case .unknownRegistration(let id), .registrationNotActive(let id, _): ["registration": String(id)]
        case .schemaBehind(_, let need): ["need": String(need)]
        case .permissionDenied(_, let error), .database(let error): DatabaseFailure(error).context
        }
    }

    public var exit: KeylineExit {
        switch self {
        // Decided by committed rows (also when another station won a race for the same device or
        // object): running the same statement again fails the same way, so not "retry" (75).
        case .activeKeyConflict, .fingerprintConflict, .escrowObjectExists: .dataError
        case .escrowObjectMismatch, .notEscrowed: .dataError
        case .stateConflict, .invalidTransition, .keyFingerprintRequired, .keyFingerprintMismatch,
             .escrowIntentWithoutJob, .noEscrowIntent, .escrowIntentCommitted, .noBenchEscrowIntent,
             .keyDoctorInterrupted: .dataError
        case .noActiveKey, .productExists, .unknownProduct, .unknownJob, .unknownRegistration,
             .registrationNotActive: .dataError
        case .schemaBehind: .configuration
        case .permissionDenied: .noPermission
        case .database(let error): DatabaseFailure(error).exit
        }
    }
}

extension LoginBindingError: ReportableError {
    public var kind: String {
        switch self {
        case .unknownLogin: "unknownLogin"
        case .stationRequired: "stationRequired"
        case .stationNotAllowed: "stationNotAllowed"
        case .notBound: "loginNotBound"
        }
    }

    public var message: String { description }

    public var context: [String: String] {
        switch self {
        case .unknownLogin(let login), .notBound(let login): ["login": login]
        case .stationRequired(let login, let role), .stationNotAllowed(let login, let role):
            ["login": login, "role": role.rawValue]
        }
    }

    public var exit: KeylineExit {
        switch self {
        case .stationRequired, .stationNotAllowed: .usage
        case .unknownLogin, .notBound: .dataError
        }
    }
}
