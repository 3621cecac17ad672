import ArgumentParser
import Foundation
import Provisioning
import USB
import CommandReporting

/// `keyline station …`: the station itself, before and around a shift.
struct StationCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "station",
        abstract: "Check this station before a shift.",
        subcommands: [Check.self])

    /// `keyline station check PIPELINE`: the preflight (StationPreflight in Provisioning).
    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "check",
            abstract: "Preflight before a shift: USB, registry, escrow store, recipients, cloud token, clock.",
            discussion: """
                Runs every check the pipeline's line depends on and prints one line per check \
                (PASS, FAIL with what to do, or SKIP with why), without provisioning anything:
                  pipeline    the pipeline file loads (every problem listed)
                  usb         libusb initialises and lists the bus; each Particle device on a port the \
                pipeline permits opens (and is closed at once). Permission denied: install the udev \
                rule particle-cli ships as 50-particle.rules (vendor 2b04)
                  registry    reachable, schema current (no pending migration), the login bound to \
                this station with the station role, and a write as it (a station.checked event)
                  store       a probe object written under .keyline-station-checks/ with the store's \
                write-once primitive, and a second write of it refused (S3 If-None-Match: *, a \
                directory's create-exclusive); audits ignore the probes
                  recipients  the escrow recipients parse, and include the active custody epoch's
                  cloud       when cloud.upload is not none: the Particle cloud accepts the token \
                (GET /v1/user, particle-cli's whoami)
                  clock       the station's clock within --clock-tolerance of the database's

                Settings come as for `keyline provision`: --station (KEYLINE_STATION), --store \
                (KEYLINE_ESCROW_STORE), --recipients (KEYLINE_RECIPIENTS), --database (DATABASE_URL, PG*), \
                PARTICLE_ACCESS_TOKEN or cloud.token_file. With --json, one JSON object per check \
                ({"check", "status": pass|fail|skip, "message", "hint"}) and a last {"summary": …} line.

                EXIT CODES
                  0    every check passed (skipped ones say why)
                  1    at least one check failed (each failure says what to do)
                  64   usage error
                """)

        @Argument(help: "The pipeline file the shift will run, e.g. pipelines/photon-factory.yaml.")
        var pipeline: String

        @OptionGroup var settings: StationSettingsOptions

        @Option(help: "Seconds the station's clock may differ from the database's.")
        var clockTolerance: Double = 5

        @OptionGroup var output: OutputOptions

        func validate() throws {
            guard clockTolerance.isFinite, clockTolerance >= 0, clockTolerance <= 3600 else {
                throw ValidationError("--clock-tolerance must be 0–3600 seconds")
            }
        }

        func run() async throws {
            let request = StationCheckRequest(
                pipeline: pipeline, environment: ProcessInfo.processInfo.environment, database: settings.database,
                store: settings.store, recipientsFile: settings.recipients, station: settings.station,
                clockTolerance: .milliseconds(Int64((clockTolerance * 1000).rounded())))
            let context = await USBContext.make()
            let report = await StationPreflight(request: request, bus: context,
                                                busUnavailableReason: await context.unavailableReason()).run()
            if output.json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                for check in report.checks {
                    FileHandle.standardOutput.write(try encoder.encode(check) + Data("\n".utf8))
                }
                let count = { (status: StationCheck.Status) in report.checks.filter { $0.status == status }.count }
                CLI.printJSON(["summary": ["passed": report.passed, "station": report.station ?? "",
                                           "pass": count(.pass), "fail": count(.fail), "skip": count(.skip)] as [String: Any]])
            } else {
                for check in report.checks {
                    let label = check.status.rawValue.uppercased()
                    print("\(label.padding(toLength: 5, withPad: " ", startingAt: 0)) \(check.check.rawValue.padding(toLength: 11, withPad: " ", startingAt: 0)) \(check.message)")
                    if let hint = check.hint, check.status == .fail { print("      \(String(repeating: " ", count: 11)) → \(hint)") }
                }
                print(report.passed ? "station \(report.station ?? "?") is ready" : "station \(report.station ?? "?") is NOT ready: fix the failed checks and run this again")
            }
            if !report.passed { throw ExitCode(KeylineExit.failure.rawValue) }
        }
    }
}
