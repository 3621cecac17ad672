import ArgumentParser
import Escrow
import Age
import Provisioning
import RMABench
import Foundation
import Registry
import USB
import CommandReporting

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
              64  usage error; 66 identity or CSV file missing; 75 registry or store unreachable
              69/76 USB or DFU failure while writing (see the message)
            Every refusal (10–17) is decided before anything is written to the device.
            """)

    @Argument(help: "Device ID (24 hex digits). Not with --batch.")
    var deviceID: String?

    @Option(help: "CSV of devices to restore: device_id,reason,ticket per row.")
    var batch: String?

    @Option(help: "Age identity file (AGE-SECRET-KEY-1…) that decrypts the line's backups.")
    var identity: String

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
        if batch != nil && (reason != nil || ticket != nil) {
            throw ValidationError("--reason and --ticket are per row with --batch")
        }
        guard (1...64).contains(concurrency) else { throw ValidationError("--concurrency must be 1–64") }
        guard timeout.isFinite, timeout > 0, timeout <= 600 else { throw ValidationError("--timeout must be more than 0 and at most 600 seconds") }
    }

    func run() async throws {
        try await DatabaseCommand.run(json: output.json) {
            let identities = try EscrowCommand.loadIdentities([identity])
            let requests = try batch.map { path in
                try Self.readBatch(path).map {
                    RestoreRequest(deviceID: $0.deviceID, productID: product, reason: $0.reason, ticket: $0.ticket)
                }
            } ?? [RestoreRequest(deviceID: deviceID!, productID: product, reason: reason, ticket: ticket)]
            let registry = try await RegistryDatabase.connect(.fromEnvironment(), connections: min(max(concurrency, 1), 8))
            // Before any device is touched: an older schema cannot record what a restore records.
            try await registry.requireCurrentSchema()
            let benchName = StationName.resolve(station)
            // A login bound to another bench would have its restoration row refused after the
            // device was written: refuse before any device is touched.
            try await registry.requireBoundStation(benchName, action: "restore keys")
            let bench = BenchDevices(bus: await USBContext.make(), timeout: .milliseconds(Int((timeout * 1000).rounded(.up))))
            defer { bench.stop() }
            let restorer = KeyRestore(registry: registry, identities: identities, devices: bench,
                                      station: benchName, storeOverride: store)
            if batch == nil {
                let report = try await restorer.restore(requests[0])
                printReport(report)
                return
            }
            let results = await Self.restoreAll(requests, with: restorer, concurrency: concurrency)
            var failed = 0
            for (request, result) in results {
                switch result {
                case .success(let report): printReport(report)
                case .failure(let error):
                    failed += 1
                    let failure = error.reportable
                    if output.json {
                        CLI.printJSON(["deviceID": request.deviceID, "outcome": "failed", "kind": failure.kind,
                                       "message": failure.message, "exitCode": Int(failure.exit.rawValue)])
                    } else {
                        print("FAILED \(request.deviceID): \(failure.message) (exit \(failure.exit.rawValue))")
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

    /// Bounded parallel restores, results in the CSV's order.
    static func restoreAll(_ requests: [RestoreRequest], with restorer: KeyRestore,
                           concurrency: Int) async -> [(RestoreRequest, Result<RestoreReport, any Error>)] {
        var results = [Result<RestoreReport, any Error>?](repeating: nil, count: requests.count)
        await withTaskGroup(of: (Int, Result<RestoreReport, any Error>).self) { group in
            var next = 0
            func start() {
                guard next < requests.count else { return }
                let (index, request) = (next, requests[next])
                next += 1
                group.addTask {
                    do { return (index, .success(try await restorer.restore(request))) } catch { return (index, .failure(error)) }
                }
            }
            for _ in 0..<min(concurrency, requests.count) { start() }
            for await (index, result) in group {
                results[index] = result
                start()
            }
        }
        return zip(requests, results.map { $0! }).map { ($0, $1) }
    }

    /// device_id,reason,ticket rows; a first row starting with "device" is a header; blank lines
    /// and lines starting with # are skipped. Fields may be double-quoted.
    static func readBatch(_ path: String) throws -> [RestoreRequest] {
        let text = String(decoding: try CLI.readFile(path), as: UTF8.self)
        var requests: [RestoreRequest] = []
        for (number, line) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") || (number == 0 && trimmed.lowercased().hasPrefix("device")) { continue }
            let fields = trimmed.split(separator: ",", omittingEmptySubsequences: false).map {
                $0.trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            }
            let id = fields[0].lowercased()
            guard id.utf8.count == 24, id.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else {
                throw CommandFailure(kind: "invalidBatchRow", message: "\(path):\(number + 1): \"\(fields[0])\" is not a device ID (24 hex digits)",
                                     context: ["file": path, "line": String(number + 1)], exit: .dataError)
            }
            func field(_ index: Int) -> String? { fields.count > index && !fields[index].isEmpty ? fields[index] : nil }
            // One restore per device: the same device twice would run two restores on it at once.
            guard !requests.contains(where: { $0.deviceID == id }) else {
                throw CommandFailure(kind: "duplicateBatchRow", message: "\(path):\(number + 1): device \(id) is listed twice",
                                     context: ["file": path, "line": String(number + 1)], exit: .dataError)
            }
            requests.append(RestoreRequest(deviceID: id, reason: field(1), ticket: field(2)))
        }
        guard !requests.isEmpty else {
            throw CommandFailure(kind: "emptyBatch", message: "\(path): no device rows", context: ["file": path], exit: .dataError)
        }
        return requests
    }
}

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
