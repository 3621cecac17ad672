import ArgumentParser
import CommandReporting
import Foundation
import Provisioning
import Registry

/// `keyline job abandon|reopen`: an operator's audited call on one device of a job.
struct JobCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "job",
        abstract: "Abandon or re-open one device of a provisioning job (audited).",
        subcommands: [Abandon.self, Reopen.self])

    static let exitHelp = """
        EXIT CODES
          0   done
          64  no --reason given
          65  the device is not in the job, is done, or is already in the state asked for
          75  the job is being run right now (let the run end first), or the registry is unreachable
          77  permission denied (the login is not the job's station's)
        """

    struct Target: ParsableArguments {
        @Argument(help: "The job ID (as `keyline provision` prints it).")
        var job: Int64
        @Argument(help: "The device ID (24 hex digits).")
        var device: String
        @Option(help: "Why (recorded in the audit trail with who, where and when).")
        var reason: String
        @Option(help: "The station recorded (default: KEYLINE_STATION, else the host name).")
        var station: String?
        @Flag(help: "Print the result as JSON.")
        var json = false

        func run(_ action: JobDeviceDecision.Action) async throws {
            try await CLI.run(json: json) {
                let device = try await JobDeviceDecision.run(action, jobID: job, deviceID: self.device.lowercased(),
                                                             reason: reason, station: station)
                if json {
                    var object: [String: Any] = ["job": device.jobID, "device": device.deviceID, "state": device.state,
                                                 "abandoned": device.abandonedAt != nil]
                    object["reason"] = device.abandonReason
                    CLI.printJSON(object)
                } else if device.abandonedAt != nil {
                    print("device \(device.deviceID) in job \(device.jobID): abandoned (state \(device.lastGoodState ?? device.state)); "
                          + "a resume no longer waits for it")
                } else {
                    print("device \(device.deviceID) in job \(device.jobID): re-opened (state \(device.state)); "
                          + "`keyline provision PIPELINE --resume \(device.jobID)` runs it again")
                }
            }
        }
    }

    struct Abandon: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Give up a device the job cannot finish; the job no longer waits for it.",
            discussion: """
                For a device stuck past key_ready (its key damaged or changed since), or gone for \
                good. It keeps its state and record and moves no further; `provision --resume` and \
                later jobs pass it by; the job completes without it and its report says it was \
                abandoned. Appends a job_device.abandoned event (login, station and time set by the \
                database; the reason and what the device held). `keyline job reopen` takes it back.

                \(JobCommand.exitHelp)
                """)
        @OptionGroup var target: Target
        func run() async throws { try await target.run(.abandon) }
    }

    struct Reopen: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Take an abandoned device back into its job.",
            discussion: """
                The device goes on from its recorded state at the next `provision --resume JOB`. \
                Appends a job_device.reopened event with the reason.

                \(JobCommand.exitHelp)
                """)
        @OptionGroup var target: Target
        func run() async throws { try await target.run(.reopen) }
    }
}
