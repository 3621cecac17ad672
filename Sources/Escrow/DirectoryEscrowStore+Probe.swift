import LocalFiles
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension DirectoryEscrowStore: WriteOnceProbing {
    /// The directory's write-once primitive is create-exclusive (O_CREAT|O_EXCL, as `put`'s link(2)):
    /// the probe is created 0600 under `<root>/.keyline-station-checks/` and fsynced, then created
    /// again, which must fail with EEXIST (a share that ignores O_EXCL would not). The root is held
    /// to the same safety checks as a put (no symlink, not group/world-writable).
    public func probeWriteOnce(name: String) async throws -> StoreWriteProbe.Outcome {
        let root = root.path
        return try await offPool { () throws -> StoreWriteProbe.Outcome in
            try Self.checkFolders(root: root, components: [StoreWriteProbe.folder])
            let folder = root + "/" + StoreWriteProbe.folder
            if mkdir(folder, 0o700) != 0 && errno != EEXIST {
                throw EscrowStoreError.io(operation: "create folder", path: folder, errno: errno)
            }
            try Self.checkFolder(folder)
            let path = folder + "/" + name
            let flags = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW
            let first = open(path, flags, 0o600)
            guard first >= 0 else { throw EscrowStoreError.io(operation: "create", path: path, errno: errno) }
            do {
                defer { close(first) }
                try Self.writeAll(first, StoreWriteProbe.contents(name: name), path: path)
                while fsync(first) != 0 {
                    if errno == EINTR { continue }
                    throw EscrowStoreError.io(operation: "fsync", path: path, errno: errno)
                }
            }
            let second = open(path, flags, 0o600)
            if second >= 0 {
                close(second)
                return .secondWriteAccepted
            }
            guard errno == EEXIST else { throw EscrowStoreError.io(operation: "create again", path: path, errno: errno) }
            return .secondWriteRefused
        }
    }
}
