import Foundation
import LocalFiles

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
        do {
            return .success(try InputFile.read(path, limit: limit, pipes: false))
        } catch {
            switch error {
            case .cannotOpen where error.isMissing: return .failure(.missing)
            case .notARegularFile(_, let type, _): return .failure(.notRegular(type))
            case .tooLarge(_, let limit, _): return .failure(.tooLarge(limit: limit))
            case .cannotOpen(_, let code), .cannotRead(_, let code): return .failure(.unreadable(String(cString: strerror(code))))
            }
        }
    }
}
