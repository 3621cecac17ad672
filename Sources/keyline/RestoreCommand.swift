import ArgumentParser
import CommandReporting
import Foundation
import RMABench

/// `keyline restore DEVICE_ID`: the RMA bench puts a returned device's original key back.
struct RestoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Restore a returned device's original key from escrow (RMA bench).",
        discussion: """
            Finds the device's active registration and its escrow object in the registry, fetches the \
            object and checks its SHA-256 against the record, decrypts it with --identity and checks \
            device ID, product and public key against the registration (the file alone is trusted for \
            nothing). Then, on the attached device (normal or DFU mode): a different valid key found in \
            the slot is escrowed first (recorded as a superseded key: no key is ever lost), the original \
            key is written, read back and compared byte for byte, and the device leaves DFU mode (a device \
            that does not is still restored: a warning says to reset it by hand). A restoration and an \
            event are recorded (operator = the database login). Decrypted key bytes live only in memory.

            --shares FILE… instead of --identity: the escrow epoch's identity is rebuilt in memory from M \
            custodians' share files (each opened with --custodian-identity, asked for at the terminal, or \
            already opened by its custodian with `age -d`), checked share by share and against the epoch's \
            recorded recipient (a tampered, repeated or other epoch's share is named and refused, exit 65; \
            too few, exit 64), used for this session only, and recorded as a recovery ceremony with the \
            devices restored under it.

            --batch FILE.csv restores a tray: one row per device (device ID, reason, ticket; a header \
            row is allowed), --concurrency at a time.

            EXIT CODES
              0   restored (every device of the batch)
              3   --batch: some devices failed; the others are restored
              10  no active registration for the device
              11  escrow backup missing, or its SHA-256 differs from the record
              12  the identity does not decrypt the backup
              13  decrypted device ID, product or public key differs from the registry
              14  the attached device is another platform than the backup's
              15  the device is protected (Device Protection)
              16  the device is not attached
              17  the registration was superseded or revoked while the restore ran
              64  usage error (--shares: fewer than the epoch's threshold); 65 a share refused (named)
              66  identity, share or CSV file missing; 75 registry or store unreachable
              69/76 USB or DFU failure while writing (see the message)
            Every refusal (10–17) is decided before anything is written to the device.
            """)

    @Argument(help: "Device ID (24 hex digits). Not with --batch.")
    var deviceID: String?

    @Option(help: "CSV of devices to restore: device_id,reason,ticket per row.")
    var batch: String?

    @Option(help: "Age identity file (AGE-SECRET-KEY-1…) that decrypts the line's backups.")
    var identity: String?

    @Option(parsing: .upToNextOption,
            help: "Instead of --identity: M share files of the escrow epoch (the age files, or documents custodians opened with `age -d`).")
    var shares: [String] = []

    @Option(name: .customLong("custodian-identity"),
            help: "With --shares: a custodian's identity file that opens their share file (repeatable); without one keyline asks at the terminal.")
    var custodianIdentities: [String] = []

    @Option(help: "With --shares: the epoch the shares must belong to.")
    var epoch: String?

    @Option(help: "Why the device came back (recorded).")
    var reason: String?

    @Option(help: "RMA ticket (recorded).")
    var ticket: String?

    @Option(help: "Product, when the device is registered in several.")
    var product: String?

    @Option(help: "Escrow store directory to read instead of the one recorded (a mounted copy).")
    var store: String?

    @Option(help: "This bench's name (default: KEYLINE_STATION or the host name).")
    var station: String?

    @Option(help: "Devices restored at once with --batch.")
    var concurrency: Int = 4

    @Option(help: "Seconds to wait for a device to be attached or to come back in DFU mode.")
    var timeout: Double = 20

    @OptionGroup var output: OutputOptions

    func validate() throws {
        if (deviceID == nil) == (batch == nil) { throw ValidationError("give a DEVICE_ID or --batch FILE.csv (not both)") }
        if identity == nil && shares.isEmpty { throw ValidationError("give --identity FILE or the epoch's --shares FILE…") }
        if batch != nil && (reason != nil || ticket != nil) {
            throw ValidationError("--reason and --ticket are per row with --batch")
        }
        guard (1...64).contains(concurrency) else { throw ValidationError("--concurrency must be 1–64") }
        guard timeout.isFinite, timeout > 0, timeout <= 600 else { throw ValidationError("--timeout must be more than 0 and at most 600 seconds") }
    }

    func run() async throws {
        try await DatabaseCommand.run(json: output.json) {
            let custody = shares.isEmpty ? nil : RestoreShares(files: shares, custodianIdentityFiles: custodianIdentities,
                                                               epoch: epoch, prompt: CustodianPrompt.onTerminal)
            let settings = RestoreSettings(identityFiles: identity.map { [$0] } ?? [], station: station, storeOverride: store,
                                           concurrency: concurrency, shares: custody)
            let bus = BenchBus.usb(timeoutSeconds: timeout)
            guard let batch else {
                let request = RestoreRequest(deviceID: deviceID!, productID: product, reason: reason, ticket: ticket)
                printReport(try await RestoreSession.restore(request, settings: settings, bus: bus))
                return
            }
            let results = try await RestoreSession.restore(batch: batch, product: product, settings: settings, bus: bus)
            var failed = 0
            for result in results {
                switch result.outcome {
                case .success(let report): printReport(report)
                case .failure(let error):
                    failed += 1
                    let failure = error.reportable
                    if output.json {
                        CLI.printJSON(["deviceID": result.request.deviceID, "outcome": "failed", "kind": failure.kind,
                                       "message": failure.message, "exitCode": Int(failure.exit.rawValue)])
                    } else {
                        print("FAILED \(result.request.deviceID): \(failure.message) (exit \(failure.exit.rawValue))")
                    }
                }
            }
            if output.json {
                CLI.printJSON(["summary": ["restored": results.count - failed, "failed": failed]])
            } else {
                print("\(results.count - failed) restored, \(failed) failed")
            }
            if failed > 0 { throw ExitCode(KeylineExit.someDevicesFailed.rawValue) }
        }
    }

    private func printReport(_ report: RestoreReport) {
        if output.json {
            var object: [String: Any] = [
                "deviceID": report.deviceID, "outcome": "restored", "product": report.productID, "platform": report.platform,
                "fingerprint": report.fingerprint, "registrationID": report.registrationID, "foundKey": report.foundKey,
                "restorationID": report.restorationID, "seconds": report.seconds,
            ]
            object["supersededFingerprint"] = report.supersededFingerprint
            object["supersededEscrowObjectID"] = report.supersededEscrowObjectID
            object["leaveFailure"] = report.leaveFailure
            CLI.printJSON(object)
        } else {
            var line = "restored \(report.deviceID) (\(report.platform), product \(report.productID)): key \(report.fingerprint); slot held \(report.foundKey)"
            if let other = report.supersededFingerprint { line += " \(other), escrowed as superseded" }
            print(line + String(format: " (%.1f s)", report.seconds))
            if let failure = report.leaveFailure {
                print("Warning: \(report.deviceID) did not leave DFU mode (\(failure)); reset it by hand to start with its key.")
            }
        }
    }
}
