import Foundation

/// Reads a file a pipeline names (firmware image, server key, recipients) the way the CLI reads
/// its inputs: a regular file of at most `limit` bytes. A device such as /dev/urandom would
/// otherwise be read without end, and a directory reported only as "cannot be read" (issue 12).
enum PipelineFiles {
    static let firmwareLimit = 16 << 20      // the largest Particle flash region (Gen 3 external) is 8 MiB
    static let serverKeyLimit = 8 * 1024     // a PEM key or the Core's 2048-byte blob
    static let recipientsLimit = 64 * 1024   // age1… lines

    enum Failure: Error {
        case missing
        case notRegular(String)
        case tooLarge(limit: Int)
        case unreadable(String)

        var message: String {
            switch self {
            case .missing: "no such file"
            case .notRegular(let what): "\(what), not a regular file"
            case .tooLarge(let limit): "larger than \(limit) bytes"
            case .unreadable(let reason): "cannot be read (\(reason))"
            }
        }
    }

    static func read(_ path: String, limit: Int) -> Result<[UInt8], Failure> {
        var info = stat()
        guard stat(path, &info) == 0 else {
            return .failure(errno == ENOENT ? .missing : .unreadable(String(cString: strerror(errno))))
        }
        switch info.st_mode & S_IFMT {
        case S_IFREG: break
        case S_IFDIR: return .failure(.notRegular("a directory"))
        case S_IFCHR: return .failure(.notRegular("a character device"))
        case S_IFBLK: return .failure(.notRegular("a block device"))
        default: return .failure(.notRegular("not a regular file"))
        }
        guard Int(info.st_size) <= limit else { return .failure(.tooLarge(limit: limit)) }
        do {
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            guard data.count <= limit else { return .failure(.tooLarge(limit: limit)) }  // grew since stat
            return .success(Array(data))
        } catch {
            return .failure(.unreadable(error.localizedDescription))
        }
    }
}
