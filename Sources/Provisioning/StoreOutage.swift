import Escrow
import EscrowS3
import FailurePolicy

/// The escrow store away, as a line sees it (issue 21, item 13): an S3 store answering 5xx or
/// not at all (after its own bounded retries), or a directory store's I/O failing (a mount gone,
/// a full or read-only disk). A device holds through it, as through the registry's outages, and
/// goes on when the store is back; what is not an outage (an unsafe store, a checksum that does
/// not match, an object already there, access refused by S3) is decided as before.
enum StoreOutage {
    static func isOutage(_ error: any Error) -> Bool {
        switch error {
        case let error as S3StoreError:
            switch error {
            case .transport: true
            case .http: error.failureClass == .retryable
            case .badResponse, .credentials: false
            }
        case let error as EscrowStoreError:
            if case .io = error { true } else { false }
        default:
            false
        }
    }
}
