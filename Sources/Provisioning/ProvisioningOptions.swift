import Foundation

/// How a run picks its devices and ends.
public struct ProvisioningOptions: Sendable {
    /// Provision at most this many devices (with `wait`: keep waiting until this many have run).
    public var deviceLimit: Int?
    /// Keep running and provision devices as they are plugged in, until stopped.
    public var wait: Bool
    /// Continue this job's unfinished devices instead of starting a new job.
    public var resumeJobID: Int64?
    /// Without `resumeJobID`: continue this station's newest job of the pipeline (same station,
    /// product and pipeline name) that an earlier run left running (a crash, a power cut, a
    /// service restart); start a new job only when there is none.
    public var continueRunningJob: Bool
    /// With `continueRunningJob`: how long to wait while a session holds that job's lease (a run
    /// still going, or a station that lost power, until the server drops its session).
    public var continueWait: Duration
    /// How long to wait for a device to come back after a mode switch, or to be plugged back in.
    public var reenumerationTimeout: Duration
    /// Where per-device logs go (`<directory>/job-<id>/`); nil = no logs.
    public var logDirectory: URL?
    /// Temp files of killed escrow writes older than this are removed when the run starts.
    public var staleTemporaryFileAge: Duration

    public init(deviceLimit: Int? = nil, wait: Bool = false, resumeJobID: Int64? = nil, continueRunningJob: Bool = false,
                continueWait: Duration = .seconds(90), reenumerationTimeout: Duration = .seconds(20), logDirectory: URL? = nil,
                staleTemporaryFileAge: Duration = .seconds(600)) {
        self.deviceLimit = deviceLimit
        self.wait = wait
        self.resumeJobID = resumeJobID
        self.continueRunningJob = continueRunningJob
        self.continueWait = continueWait
        self.reenumerationTimeout = reenumerationTimeout
        self.logDirectory = logDirectory
        self.staleTemporaryFileAge = staleTemporaryFileAge
    }
}
