import Foundation
import Escrow

/// Opens the escrow store a location names, for every command that takes one (`escrow backup
/// --store`, `provision`, restore, audit):
/// - a path or `file:///abs/path` → `DirectoryEscrowStore`;
/// - `s3://bucket/prefix[?region=…&endpoint=…&lock=COMPLIANCE|GOVERNANCE&retain-days=N]` →
///   `S3EscrowStore`, with endpoint, region and credentials from the standard AWS variables
///   and files in `environment` where the URI does not give them.
public enum EscrowStores {
    public static func open(_ location: String, environment: [String: String] = ProcessInfo.processInfo.environment,
                            s3Retry: S3RetryPolicy = S3RetryPolicy()) throws -> any EscrowStore {
        if location.hasPrefix("s3://") {
            return try S3EscrowStore(uri: location, environment: environment, retry: s3Retry)
        }
        if location.hasPrefix("file://") {
            guard let url = URL(string: location), url.isFileURL, url.host == nil || url.host == "" || url.host == "localhost" else {
                throw EscrowStoreError.invalidStore("\(location) is not a file:///absolute/path URI")
            }
            return DirectoryEscrowStore(root: url)
        }
        if location.contains("://") {
            throw EscrowStoreError.invalidStore("\(location): unknown scheme (use a directory path, file:///path or s3://bucket/prefix)")
        }
        return DirectoryEscrowStore(root: URL(fileURLWithPath: location))
    }

    /// Checks a location without opening it (no credentials needed): what a pipeline's
    /// validation reports before a job starts.
    public static func validate(_ location: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        if location.hasPrefix("s3://") {
            _ = try S3StoreSettings.parse(location, environment: environment)
        } else if location.contains("://"), !location.hasPrefix("file://") {
            throw EscrowStoreError.invalidStore("\(location): unknown scheme (use a directory path, file:///path or s3://bucket/prefix)")
        }
    }
}
