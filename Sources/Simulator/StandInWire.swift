// Framing helpers of the stand-in wire protocol, and waiting for async work from the server's
// own threads.

import Dispatch

// MARK: - little-endian wire encoding

struct WireWriter {
    var data: [UInt8] = []
    mutating func u8(_ v: UInt8) { data.append(v) }
    mutating func u16(_ v: UInt16) { data += [UInt8(v & 0xff), UInt8(v >> 8)] }
    mutating func u32(_ v: UInt32) { for i in 0..<4 { data.append(UInt8((v >> (8 * UInt32(i))) & 0xff)) } }
    mutating func bytes(_ v: [UInt8]) { data += v }
}

struct WireReader {
    private let data: [UInt8]
    private var offset = 0
    init(_ data: [UInt8]) { self.data = data }
    mutating func u8() -> UInt8? {
        guard offset < data.count else { return nil }
        defer { offset += 1 }
        return data[offset]
    }
    mutating func u16() -> UInt16? {
        guard let a = u8(), let b = u8() else { return nil }
        return UInt16(a) | UInt16(b) << 8
    }
    mutating func u32() -> UInt32? {
        guard let a = u16(), let b = u16() else { return nil }
        return UInt32(a) | UInt32(b) << 16
    }
    mutating func rest() -> [UInt8] {
        defer { offset = data.count }
        return Array(data[offset...])
    }
}

// MARK: - waiting for async work from a dedicated thread

private final class ResultBox<T: Sendable>: @unchecked Sendable {
    var value: T?
}

/// Runs async work and blocks the calling thread — always one of the server's own threads,
/// never a cooperative-pool thread — until it finishes.
func waitFor<T: Sendable>(_ operation: @escaping @Sendable () async -> T) -> T {
    let box = ResultBox<T>()
    let done = DispatchSemaphore(value: 0)
    Task {
        box.value = await operation()
        done.signal()
    }
    done.wait()
    return box.value!
}
