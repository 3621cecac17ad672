import ArgumentParser
import Provisioning
import Foundation
import USB
import CommandReporting

/// `keyline provision PIPELINE`: the factory line.
struct ProvisionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "provision",
        abstract: "Provision the attached devices with a pipeline: flash, server key, device key, escrow, register.",
        discussion: """
            Every device attached (or selected by the pipeline) runs the workflow of the pipeline file \
            in parallel: identify, switch to DFU mode, flash each image, write the server key, generate \
            (key mode host, blank slots only) or read (key mode device) the device key, escrow its \
            encrypted backup, register its public key, leave DFU mode. Each state is recorded in the \
            registry before it counts, so a run stopped anywhere (Ctrl-C, a crash, a power cut) is \
            continued with --resume JOB. A key already on a device is re-read, never replaced. With \
            --continue, a run takes back this station's job of the pipeline that an earlier run left \
            running (a crash, a power cut, a service restart) instead of starting a new one, so an \
            unattended line restarted by systemd finishes its own devices.

            Per-station settings can come from the command line or the environment instead of the \
            pipeline file: --station (KEYLINE_STATION), --store (KEYLINE_ESCROW_STORE), --recipients \
            (KEYLINE_RECIPIENTS), database (DATABASE_URL or libpq's PG* variables).

            A pipeline with `ports:` (the jig's port paths, each with an optional nickname) never \
            touches a device on another port: it shows as "not permitted" (a port_not_permitted JSON \
            event) and the registry records port.not_permitted once per arrival. Nicknames show in \
            the table and as portName in JSON events. Check a station first: `keyline station check`.

            Ctrl-C stops at the next step boundary and prints how to resume; a second Ctrl-C exits at once \
            (a resume still works). SIGTERM does the same (`systemctl stop` of the station package's \
            keyline-provision@PIPELINE unit sends one): 130 when devices were stopped mid-way, else the \
            job's own result (0, or 3 when devices of the run failed).

            The Particle cloud must learn each key: its upload is queued in the registry with the \
            registration (pipeline `cloud.upload`: all, the default; generated; none) and sent while \
            the line runs (PARTICLE_ACCESS_TOKEN or `cloud.token_file`, PARTICLE_API_URL or \
            `cloud.api_url`); the job then waits up to `cloud.drain_timeout` for its uploads and prints \
            where they stand. A device is done once registered; uploads left pending go out with \
            `keyline cloud push`. With `cloud.require_accepted: true` the job fails unless all were \
            accepted (75 pending, 65 parked, 77 token refused; see `keyline cloud --help`). A pipeline \
            with a `cloud:` section needs its token before any device is touched (78).

            EXIT CODES
              0    every device done (or skipped: another platform, already provisioned)
              3    some devices failed; the others are done (see the table and the job's logs)
              64   usage error
              65   invalid pipeline (every problem is listed with file and line), or --resume of a
                   job that does not exist or provisions another product
              66   pipeline or a file it names is missing
              69   no device to provision (none attached, none selected)
              75   registry database or escrow store unreachable, at the start or for devices that
                   waited for it in vain: fix it, then --resume; or the job is being run by another
                   keyline process right now (with --continue: still after --continue-wait)
              77   permission denied (database role, store directory)
              78   database settings invalid
              79   unsafe escrow store directory (a symlink or a group/world-writable folder at
                   its root); nothing was touched. The message says what to fix
              130  interrupted (Ctrl-C or SIGTERM): --resume JOB (or the next --continue) continues
            """)

    @Argument(help: "The pipeline file (YAML), e.g. pipelines/photon-factory.yaml.")
    var pipeline: String

    @Option(help: "Provision at most this many devices (with --wait: keep waiting until this many ran).")
    var devices: Int?

    @Flag(help: "Keep running and provision devices as they are plugged in, until Ctrl-C.")
    var wait = false

    @Option(help: "Continue job JOB after a crash or a power cut: every unfinished device goes on from its last recorded state.")
    var resume: Int64?

    @Flag(name: .customLong("continue"),
          help: "Continue this station's newest job of this pipeline that a crash, power cut or restart left running, instead of starting a new one; start one only when there is none. While a session holds that job (a run still going, or a station that lost power until the registry drops its session, about 25 s) wait up to --continue-wait, then exit 75. The station package's unit runs with --wait --continue.")
    var continueRunningJob = false

    @Option(help: "With --continue: seconds to wait while a session holds the job to continue.")
    var continueWait: Double = 90

    @OptionGroup var settings: StationSettingsOptions

    @Option(help: "Devices provisioned at once (default: the pipeline's).")
    var concurrency: Int?

    @Option(help: "Folder for the per-device logs of each job (default: KEYLINE_LOG_DIR or ./keyline-logs).")
    var logDir: String?

    @Option(help: "Seconds to wait for a device to come back after a mode switch or to be plugged back in.")
    var timeout: Double = 20

    @OptionGroup var output: OutputOptions

    func validate() throws {
        if let devices, devices < 1 { throw ValidationError("--devices must be at least 1") }
        if let concurrency, !(1...256).contains(concurrency) { throw ValidationError("--concurrency must be 1–256") }
        guard timeout.isFinite, timeout > 0, timeout <= 600 else { throw ValidationError("--timeout must be more than 0 and at most 600 seconds") }
        if wait && resume != nil {
            throw ValidationError("--wait and --resume cannot be combined: resume the job, then start a new one with --wait (or use --wait --continue)")
        }
        if continueRunningJob && resume != nil { throw ValidationError("--continue and --resume cannot be combined: --resume names the job itself") }
        guard continueWait.isFinite, continueWait >= 0, continueWait <= 3600 else {
            throw ValidationError("--continue-wait must be 0 to 3600 seconds")
        }
    }

    func run() async throws {
        let display = ProvisionDisplay(style: output.json ? .json : isatty(STDOUT_FILENO) == 1 ? .table : .lines)
        // PostgreSQL errors (an unreachable registry at the start) exit as `keyline db` does: 75.
        try await DatabaseCommand.run(json: output.json) {
            let request = ProvisioningRequest(
                pipeline: pipeline, environment: ProcessInfo.processInfo.environment, database: settings.database,
                store: settings.store, recipientsFile: settings.recipients, station: settings.station, concurrency: concurrency, deviceLimit: devices, wait: wait,
                resumeJobID: resume, continueRunningJob: continueRunningJob,
                continueWait: .milliseconds(Int((continueWait * 1000).rounded(.up))), reenumerationTimeout: .milliseconds(Int((timeout * 1000).rounded(.up))), logDirectory: logDir)
            let prepared = try await ProvisioningStation.prepare(request)
            let context = await USBContext.make()
            if let reason = await context.unavailableReason() {
                display.say("keyline: USB is not available here (\(reason)); waiting for devices anyway")
            }
            let stop = StopSignal()
            let interrupts = StopOnSignals(stop, stopping: {
                display.say("keyline: stopping after the running steps finish (Ctrl-C again to quit at once)")
            }, quitting: {
                FileHandle.standardError.write(Data("keyline: stopped at once; run again with --resume to continue\n".utf8))
                Foundation.exit(KeylineExit.interrupted.rawValue)
            })
            defer { interrupts.cancel() }
            let summary: ProvisioningSummary
            do {
                summary = try await prepared.run(on: context, stop: stop, events: { display.handle($0) })
            } catch {
                await display.finish()
                throw error
            }
            await display.finish()
            // The cloud's line first, so the summary stays the last JSON line.
            let cloudFailure = try await finishCloud(prepared, jobID: summary.jobID, json: output.json)
            report(summary, logRoot: request.logRoot)
            switch summary.verdict(waited: wait, resumed: resume != nil) {
            case .done: if let cloudFailure { throw cloudFailure }
            case .failed(let error): throw error
            case .interrupted: throw ExitCode(KeylineExit.interrupted.rawValue)
            case .infrastructureFailed: throw ExitCode(KeylineExit.tempFail.rawValue)
            case .someDevicesFailed: throw ExitCode(KeylineExit.someDevicesFailed.rawValue)
            }
        }
    }

    /// The summary: JSON, or a line per failed device and how to continue.
    private func report(_ summary: ProvisioningSummary, logRoot: String) {
        let done = summary.count(.done), failed = summary.count(.failed)
        let skipped = summary.count(.skipped), interrupted = summary.count(.interrupted)
        if output.json {
            if let data = try? ProvisioningEvent.jsonEncoder().encode(["summary": summary]) {
                FileHandle.standardOutput.write(data + Data("\n".utf8))
            }
            // stdout is for the program reading the events; the person who pressed Ctrl-C reads stderr.
            if summary.isResumable {
                FileHandle.standardError.write(Data(("keyline: to continue: keyline provision \(pipeline) --resume \(summary.jobID)"
                    + (continueRunningJob ? " (or start this line again: --continue takes the job back)" : "") + "\n").utf8))
            }
        } else {
            print("")
            print("job \(summary.jobID): \(done) done, \(failed) failed, \(skipped) skipped, \(interrupted) interrupted in \(String(format: "%.1f", summary.seconds)) s (product \(summary.product), station \(summary.station))")
            for device in summary.devices where device.outcome == .failed {
                print("  FAILED \(device.port) \(device.deviceID ?? "?") at \(device.failedStep?.rawValue ?? "?") (\(device.failureClass ?? "?")): \(device.reason ?? "")")
            }
            print("  logs: \(logRoot)/job-\(summary.jobID)/")
            if summary.isResumable {
                print("  to continue: keyline provision \(pipeline) --resume \(summary.jobID)")
            }
        }
    }
}
