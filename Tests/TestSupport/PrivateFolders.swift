import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Creates `path` and any missing folder above it with mode 0700 whatever the umask (a umask of
/// 002 would make FileManager's folders group-writable, which an escrow store refuses).
public func makePrivateFolders(_ path: String) throws {
    var current = path.hasPrefix("/") ? "" : "."
    for component in path.split(separator: "/") {
        current += "/" + component
        if mkdir(current, 0o700) != 0 && errno != EEXIST {
            throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
        }
    }
}
