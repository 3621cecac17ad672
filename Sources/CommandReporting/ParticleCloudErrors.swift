import ParticleCloud

// How the cloud outbox's errors appear on the command line (never with the token).

extension ParticleCloudError: ReportableError {
    public var kind: String {
        switch self {
        case .noToken: "cloudNoToken"
        case .tokenFile: "cloudTokenFileUnusable"
        case .apiURL: "cloudAPIURLRefused"
        case .unauthorized: "cloudTokenRefused"
        case .stillPending: "cloudUploadsPending"
        case .parked: "cloudUploadsParked"
        }
    }

    public var message: String { description }

    public var context: [String: String] {
        switch self {
        case .noToken: [:]
        case .tokenFile(let path, _): ["file": path]
        case .apiURL(let url, _): ["apiURL": url]
        case .unauthorized(let status, let code, _, let requestID, let deviceID):
            ["status": String(status), "error": code ?? "", "requestID": requestID ?? "", "device": deviceID]
        case .stillPending(let count, _): ["pending": String(count)]
        case .parked(let count, let deviceID, _): ["parked": String(count), "device": deviceID]
        }
    }

    public var exit: KeylineExit {
        switch self {
        case .noToken, .tokenFile, .apiURL: .configuration
        case .unauthorized: .noPermission
        case .stillPending: .tempFail
        case .parked: .dataError
        }
    }

    /// What the exit codes mean for cloud uploads, for the commands' help.
    public static let helpText = """
        CLOUD EXIT CODES
          65  the Particle cloud refused some uploads for good (400/404, device not in the
              product): they are parked with the cloud's reason (`keyline cloud status`);
              fix the cause, then `keyline cloud push --retry-parked`
          75  uploads still pending (cloud unreachable, 5xx, rate limited): nothing is
              lost; run `keyline cloud push` again later
          77  the cloud refused the access token (401/403): every upload stopped, none
              parked; give a valid token and push again
          78  no token, a token file readable by others, or an API URL that would send
              the token in clear text over a network
        """
}
