import Escrow
import FailurePolicy
import Foundation

/// A directory escrow store a run can write to: it exists (made 0700 if missing), is a directory
/// with a safe root, and this user can write it. Blocking: call it off the cooperative pool.
enum EscrowDirectoryCheck {
    static func check(_ path: String) throws {
        var isDirectory: ObjCBool = false
        if !FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            do {
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o700])
                return
            } catch {
                throw EscrowDirectoryError.cannotCreate(store: path, reason: error.localizedDescription)
            }
        }
        guard isDirectory.boolValue else { throw EscrowDirectoryError.notADirectory(store: path) }
        // A symlinked or world-writable root is refused before any device is touched (exit 79);
        // product and device folders are checked by each put.
        try DirectoryEscrowStore(root: URL(fileURLWithPath: path)).checkRootIsSafe()
        guard access(path, W_OK | X_OK) == 0 else { throw EscrowDirectoryError.notWritable(store: path) }
    }
}

/// Why a run cannot use its escrow store directory (checked before any device is touched).
public enum EscrowDirectoryError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Missing, and it cannot be made (an unmounted volume, no permission above it).
    case cannotCreate(store: String, reason: String)
    case notADirectory(store: String)
    case notWritable(store: String)

    public var store: String {
        switch self {
        case .cannotCreate(let store, _), .notADirectory(let store), .notWritable(let store): store
        }
    }

    public var description: String {
        switch self {
        case .cannotCreate(let store, let reason):
            "escrow store \(store) does not exist and cannot be created (\(reason)); mount or create it"
        case .notADirectory(let store): "escrow store \(store) is not a directory"
        case .notWritable(let store): "escrow store \(store) cannot be written by this user; fix its permissions or mount"
        }
    }
}

extension EscrowDirectoryError: ClassifiedError {
    /// A person must mount, create or fix the folder; a path that is a file is the settings' fault.
    public var failureClass: FailureClass {
        switch self {
        case .cannotCreate, .notWritable: .needsOperator
        case .notADirectory: .badInput
        }
    }
}
