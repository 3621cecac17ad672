import FailurePolicy

/// Why a request to an S3 escrow store failed. Names the bucket, the object key and the store's
/// own error code; never credentials, signatures or object contents.
public enum S3StoreError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The store answered with an error status (`code` is S3's `<Code>`, or the status's name for
    /// a reply without a body, such as HEAD's).
    case http(operation: String, bucket: String, key: String, status: Int, code: String, message: String, requestID: String?)
    /// No usable reply: connection refused or reset, timeout, TLS failure (`reason` describes it).
    case transport(operation: String, bucket: String, key: String, reason: String)
    /// The reply was not what S3 sends (e.g. a stored checksum other than the one sent).
    case badResponse(operation: String, bucket: String, key: String, reason: String)
    /// No credentials in the standard places (names the places, not values).
    case credentials(String)

    public var description: String {
        switch self {
        case .http(let operation, let bucket, let key, let status, let code, let message, let requestID):
            "escrow store s3://\(bucket): \(operation) \(key) failed: HTTP \(status) \(code)"
                + (message.isEmpty ? "" : " (\(message))") + (requestID.map { ", request \($0)" } ?? "") + "; " + advice
        case .transport(let operation, let bucket, let key, let reason):
            "escrow store s3://\(bucket): \(operation) \(key) got no reply: \(reason); check the endpoint and the network"
        case .badResponse(let operation, let bucket, let key, let reason):
            "escrow store s3://\(bucket): \(operation) \(key): unexpected reply: \(reason)"
        case .credentials(let reason):
            "escrow store: \(reason)"
        }
    }

    private var advice: String {
        guard case .http(_, _, _, let status, let code, _, _) = self else { return "" }
        switch (status, code) {
        case (403, _): return "the credentials lack permission for this bucket or key (or the clock is off)"
        case (_, "NoSuchBucket"): return "create the bucket or fix the store URI"
        case (_, "InvalidRequest") where status == 400: return "check the bucket's Object Lock settings"
        default: return isRetryable ? "the store is overloaded or restarting; retried, still failing" : "check the store"
        }
    }

    /// Whether the same request can succeed later: server errors, throttling, timeouts and lost
    /// connections, and S3's 409 ConditionalRequestConflict (a concurrent conditional write).
    var isRetryable: Bool {
        switch self {
        case .http(_, _, _, let status, let code, _, _):
            status >= 500 || status == 429 || status == 408 || code == "SlowDown" || code == "RequestTimeout"
                || code == "ConditionalRequestConflict"
        case .transport: true
        case .badResponse, .credentials: false
        }
    }
}

extension S3StoreError: ClassifiedError {
    /// 5xx, throttling and timeouts are retryable (after the store's own bounded retries); an
    /// access refusal (403), a missing bucket, bad settings or credentials need a person.
    public var failureClass: FailureClass { isRetryable ? .retryable : .needsOperator }
}
