import ArgumentParser
import CommandReporting
import Foundation
import ParticleCloud
import Registry

/// `keyline cloud …`: the Particle cloud's view of the keys keyline registered (issue 20).
struct CloudCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cloud",
        abstract: "Upload registered public keys to the Particle cloud and show the outbox.",
        discussion: """
            A device connects only if Particle's cloud holds its public key. Every key the cloud must \
            learn is queued in the registry's cloud outbox in the same transaction that registers it; \
            `keyline provision` and the bench's key commands send the queue as they run, and \
            `keyline cloud push` sends whatever is left (for example after the line ran with the \
            internet down). Each key is sent with particle-cli's own call (POST \
            /v1/provisioning/{deviceId}); a key the cloud accepted is never sent again.

            The access token comes from PARTICLE_ACCESS_TOKEN, or from --token-file / \
            PARTICLE_TOKEN_FILE (a file readable by its owner only: mode 0600). It is never printed, \
            logged or stored. The API is PARTICLE_API_URL (default https://api.particle.io); plain \
            http is accepted only for a loopback address.

            \(ParticleCloudError.helpText)

            \(DatabaseFailure.helpText)
            """,
        subcommands: [Push.self, Status.self]
    )
}

extension CloudCommand {
    struct Push: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send every pending key upload to the Particle cloud.",
            discussion: """
                Sends at most --in-flight uploads at once. 5xx, 429 (Retry-After honoured) and \
                timeouts are retried with back-off until --timeout; 401/403 stops every upload at once \
                (none is parked); 400/404 or a device the product does not accept parks that upload \
                with the cloud's reason. --retry-parked queues parked uploads again first.

                \(KeylineExit.helpText)
                """)

        @Option(name: .long, help: ArgumentHelp("A file holding the Particle access token (mode 0600).", valueName: "FILE"))
        var tokenFile: String?
        @Option(name: .long, help: ArgumentHelp("Uploads in flight at once.", valueName: "N"))
        var inFlight = 8
        @Option(name: .long, help: ArgumentHelp("Give up waiting for retries after this many seconds.", valueName: "SECONDS"))
        var timeout = 300
        @Flag(name: .long, help: "Queue parked uploads again before sending (after fixing their cause).")
        var retryParked = false
        @Flag(name: .long, help: "Do not add each device to its product before sending its key.")
        var noProductMembership = false
        @Option(name: .long, help: ArgumentHelp("Recorded on the upload events (default: KEYLINE_STATION, else the login's bound station).", valueName: "NAME"))
        var station: String?
        @OptionGroup var output: OutputOptions

        func validate() throws {
            guard (1...256).contains(inFlight) else { throw ValidationError("--in-flight must be 1…256") }
            guard (0...86_400).contains(timeout) else { throw ValidationError("--timeout must be 0…86400 seconds") }
        }

        func run() async throws {
            try await DatabaseCommand.run(json: output.json) {
                let registry = try await RegistryDatabase.connect()
                try await registry.requireCurrentSchema()
                let push = CloudPush(api: try ParticleAPIBase.resolve(pipeline: nil), tokenFile: tokenFile,
                                     station: station ?? StationName.named(in: ProcessInfo.processInfo.environment), inFlight: inFlight,
                                     timeout: .seconds(timeout), retryParked: retryParked,
                                     joinProduct: !noProductMembership)
                let result = try await push.run(registry: registry)
                if output.json {
                    CLI.printJSON(["sent": result.tally.sent, "retried": result.tally.retried,
                                   "requeued": result.requeued, "pending": result.counts.pending,
                                   "parked": result.counts.parked, "sentTotal": result.counts.sent])
                } else {
                    print("sent \(result.tally.sent) key\(result.tally.sent == 1 ? "" : "s") to the Particle cloud"
                          + (result.tally.retried > 0 ? " (\(result.tally.retried) attempts retried)" : "")
                          + "; outbox: \(result.counts.pending) pending, \(result.counts.sent) sent, \(result.counts.parked) parked")
                }
            }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the cloud outbox: pending, sent and parked uploads, with reasons.",
            discussion: """
                Lists pending and parked uploads (device, product, attempts, last HTTP status, the \
                cloud's request ID and reason) and counts sent ones; --all lists sent ones too. \
                Exits 0 whatever the state (use --json and the counts in scripts).

                \(KeylineExit.helpText)
                """)

        @Option(name: .long, help: ArgumentHelp("Only this job's uploads.", valueName: "JOB"))
        var job: Int64?
        @Flag(name: .long, help: "List sent uploads too.")
        var all = false
        @OptionGroup var output: OutputOptions

        func run() async throws {
            try await DatabaseCommand.run(json: output.json) {
                let registry = try await RegistryDatabase.connect()
                try await registry.requireCurrentSchema()
                let counts = try await registry.cloudUploadCounts(jobID: job)
                let uploads = try await registry.cloudUploads(jobID: job).filter { all || $0.state != .sent }
                if output.json {
                    CLI.printJSON(["pending": counts.pending, "sent": counts.sent, "parked": counts.parked,
                                   "uploads": uploads.map(\.json)] as [String: Any])
                    return
                }
                print("cloud outbox: \(counts.pending) pending, \(counts.sent) sent, \(counts.parked) parked")
                for upload in uploads { print("  " + upload.line) }
            }
        }
    }
}

extension CloudUpload {
    var json: [String: Any] {
        var object: [String: Any] = ["id": id, "device": deviceID, "product": productID, "fingerprint": fingerprint,
                                     "state": state.rawValue, "attempts": attempts,
                                     "queuedAt": ISO8601DateFormatter().string(from: queuedAt)]
        if let jobID { object["job"] = jobID }
        if let lastStatus { object["lastStatus"] = lastStatus }
        if let lastRequestID { object["requestID"] = lastRequestID }
        if let reason { object["reason"] = reason }
        if let sentAt { object["sentAt"] = ISO8601DateFormatter().string(from: sentAt) }
        if state == .pending { object["nextAttemptAt"] = ISO8601DateFormatter().string(from: nextAttemptAt) }
        return object
    }

    var line: String {
        var text = "\(deviceID)  \(state.rawValue)  product \(productID)  attempts \(attempts)"
        if let lastStatus { text += "  HTTP \(lastStatus)" }
        if let lastRequestID { text += "  request \(lastRequestID)" }
        if let reason { text += "  — \(reason)" }
        return text
    }
}
