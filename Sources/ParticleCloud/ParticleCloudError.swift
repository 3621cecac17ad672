import FailurePolicy

/// Why keyline could not deliver a key to the Particle cloud (or could not even start). Never
/// holds the access token or key material: the cloud's own words, status, request ID, device.
public enum ParticleCloudError: Error, Sendable, Hashable, CustomStringConvertible, ClassifiedError {
    /// Neither PARTICLE_ACCESS_TOKEN nor a token file was given.
    case noToken
    /// The token file cannot be used (missing, unreadable, empty, or readable by others).
    case tokenFile(path: String, problem: String)
    /// The API base URL is not one keyline will send a token to.
    case apiURL(String, problem: String)
    /// 401 or 403: the token is missing, expired or lacks the rights; every upload stops.
    case unauthorized(status: Int, code: String?, description: String?, requestID: String?, deviceID: String)
    /// Uploads are still pending when the drain had to end (the cloud kept failing or was down).
    case stillPending(count: Int, lastProblem: String?)
    /// Uploads the cloud refused for good (400/404/not a product member): parked with its reason.
    case parked(count: Int, firstDeviceID: String, firstReason: String)

    public var description: String {
        switch self {
        case .noToken:
            "no Particle access token: set PARTICLE_ACCESS_TOKEN or give --token-file (a file of mode 0600 "
                + "holding the token); keys stay queued in the registry until then"
        case .tokenFile(let path, let problem):
            "Particle token file \(path): \(problem)"
        case .apiURL(let url, let problem):
            "Particle API URL \(url): \(problem)"
        case .unauthorized(let status, let code, let text, let requestID, let deviceID):
            "the Particle cloud refused the access token (HTTP \(status)\(code.map { " \($0)" } ?? "")"
                + "\(text.map { ": \($0)" } ?? "")\(requestID.map { ", request \($0)" } ?? "")) while uploading the key "
                + "of device \(deviceID); all uploads stopped and stay queued: give a valid token "
                + "(`particle token create`, with rights to the product) and run `keyline cloud push`"
        case .stillPending(let count, let problem):
            "\(count) key upload\(count == 1 ? "" : "s") still pending in the cloud outbox"
                + "\(problem.map { " (last problem: \($0))" } ?? ""); nothing is lost: run `keyline cloud push` "
                + "once the Particle cloud is reachable"
        case .parked(let count, let deviceID, let reason):
            "\(count) key upload\(count == 1 ? " was" : "s were") refused by the Particle cloud and parked "
                + "(first: device \(deviceID): \(reason)); fix the cause (e.g. add the device to the product) and run "
                + "`keyline cloud push --retry-parked`; see `keyline cloud status`"
        }
    }

    public var failureClass: FailureClass {
        switch self {
        case .noToken, .tokenFile, .unauthorized: .needsOperator
        case .apiURL: .badInput
        case .stillPending: .retryable
        case .parked: .needsOperator
        }
    }
}
