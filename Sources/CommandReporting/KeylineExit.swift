
/// keyline's exit codes (sysexits.h values, so scripts and shells already know them). Listed in
/// `keyline --help`; every command maps its failures onto these.
public enum KeylineExit: Int32, CaseIterable, Sendable {
    case success = 0
    case failure = 1
    /// `audit`: at least one finding is an error.
    case auditErrors = 2
    /// `provision`, `restore --batch`: some devices failed, the others finished.
    case someDevicesFailed = 3
    /// `restore` refusals (nothing was written to the device), one code each.
    case restoreNoRegistration = 10
    case restoreBackupUnavailable = 11
    case restoreCannotDecrypt = 12
    case restoreBackupMismatch = 13
    case restorePlatformMismatch = 14
    case restoreDeviceProtected = 15
    case restoreDeviceNotAttached = 16
    case restoreRegistrationChanged = 17
    case usage = 64
    /// Bad input data: malformed or wrong key, blob, backup or pipeline.
    case dataError = 65
    /// An input file does not exist or cannot be read.
    case noInput = 66
    /// A device is missing, stopped answering, or cannot be used (USB, DFU).
    case unavailable = 69
    case software = 70
    /// An output file exists (never overwritten without --force) or cannot be created.
    case cannotCreate = 73
    case ioError = 74
    /// A temporary condition (database unreachable, conflict with another station): retry.
    case tempFail = 75
    /// The device or peer broke protocol (DFU error status, unexpected state).
    case protocolError = 76
    case noPermission = 77
    case configuration = 78
    /// The escrow directory store has a symlinked or group/world-writable folder: fix the folder.
    case unsafeEscrowStore = 79
    /// Stopped by Ctrl-C (128 + SIGINT, as shells report it).
    case interrupted = 130

    public static let helpText = """
        EXIT CODES
          0   success
          1   failure not listed below
          2   audit: at least one finding is an error
          3   provision, restore --batch: some devices failed, the others are done (provision
              --resume: also a device of the job that never showed up; the run names it)
          10–17 restore refusals (see `keyline restore --help`); nothing was written to the device
          64  usage error (bad option or argument)
          65  bad input data (malformed or unsuitable key, blob, backup, pipeline)
          66  input file missing or unreadable
          69  device unavailable (not found, stopped answering, protected)
          73  output exists or cannot be created (nothing is overwritten without --force)
          74  I/O error
          75  temporary failure (database unreachable, conflict): retry
          76  protocol error from a device or peer (DFU status)
          77  permission denied
          78  configuration error
          79  unsafe escrow store: a symlink, or a group/world-writable folder, where the store's
              folders should be (the message names it and how to fix it); nothing was written
          130 interrupted (Ctrl-C); `provision --resume JOB` continues
        With --json, results and errors are JSON objects on standard output.
        """
}
