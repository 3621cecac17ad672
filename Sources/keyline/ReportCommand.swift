import ArgumentParser
import Audit
import CommandReporting
import Foundation

/// `keyline report JOB`: how a batch went.
struct ReportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Report how a provisioning job went: each device, each step's timing, totals.",
        discussion: """
            Per device: port, device ID, platform, outcome, attempts, each step with its start (seconds \
            from the batch's first step) and duration, every failed try of a retried step included, and \
            the failure with its reason. Totals: devices done/failed/unfinished, wall time, throughput \
            (devices done per minute), the most devices running at once and the parallel efficiency of \
            the devices that finished (time their steps ran ÷ (their wall time × their peak at once); a \
            device that failed after a long hold does not drag it down). --format html writes one self-contained page (summary, timeline chart with \
            one row per port, device table) to standard output or -o FILE.

            EXIT CODES
              0   the report was written
              66  no such job
              73  -o FILE exists (use --force)
              75  registry unreachable
              77  permission denied
            """)

    @Argument(help: "The job ID (as `keyline provision` prints it).")
    var job: Int64

    @Option(help: "Output format: table, csv, json or html.")
    var format: String = "table"

    @Option(name: .shortAndLong, help: "Write the report to this file instead of standard output.")
    var output: String?

    @Flag(help: "Replace an existing -o file.")
    var force = false

    func validate() throws {
        guard ["table", "csv", "json", "html"].contains(format) else {
            throw ValidationError("--format must be table, csv, json or html")
        }
    }

    func run() async throws {
        try await CLI.run(json: format == "json") {
            let report = try await JobReport.load(jobID: job)
            let text = switch format {
            case "csv": report.csv()
            case "json": try report.json()
            case "html": report.html()
            default: report.table()
            }
            if let output {
                if !force, try CLI.existsAsReplaceableFile(output) { throw CommandFailure.outputExists(output) }
                try CLI.writeNewFile(output, Array(text.utf8), mode: 0o644, force: force)
            } else {
                FileHandle.standardOutput.write(Data(text.utf8))
            }
        }
    }
}
