import CommandReporting
import Foundation
import ParticleCloud
import Provisioning
import Registry

extension ProvisionCommand {
    /// After the job: waits for its cloud uploads (the pipeline's `cloud.drain_timeout`) and says
    /// where they stand. Returns the error that fails the job when the pipeline's
    /// `cloud.require_accepted` is on and they are not all accepted.
    func finishCloud(_ station: ProvisioningStation, jobID: Int64, json: Bool) async throws -> ParticleCloudError? {
        let outcome = try await station.finishCloudUploads(jobID: jobID)
        var counts = outcome?.counts ?? CloudUploadCounts()
        if outcome == nil { counts = try await station.registry.cloudUploadCounts(jobID: jobID) }
        guard counts.pending + counts.sent + counts.parked > 0 else { return nil }
        if json {
            var object: [String: Any] = ["pending": counts.pending, "sent": counts.sent, "parked": counts.parked]
            if let problem = outcome?.problem { object["problem"] = problem.reportable.message }
            CLI.printJSON(["cloud": object])
        } else {
            print("cloud: \(counts.sent) key\(counts.sent == 1 ? "" : "s") accepted, \(counts.pending) pending, \(counts.parked) parked")
            for upload in outcome?.parked ?? [] {
                print("  \(upload.deviceID): parked: \(upload.reason ?? "refused")")
            }
            if let problem = outcome?.problem {
                FileHandle.standardError.write(Data("keyline: \(problem.reportable.message)\n".utf8))
            } else if outcome == nil, counts.pending > 0 {
                FileHandle.standardError.write(Data("keyline: \(counts.pending) key upload\(counts.pending == 1 ? "" : "s") queued for the Particle cloud and not sent from this station (no PARTICLE_ACCESS_TOKEN): run `keyline cloud push`\n".utf8))
            }
        }
        return outcome?.failure
    }
}
