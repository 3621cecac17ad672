#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where streaming `Age.encrypt(from:to:…)` / `Age.decrypt(from:to:…)` read their input.
public protocol AgeByteSource {
    /// Reads up to `buffer.count` bytes into `buffer`; returns 0 only at the end of the input.
    mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int
}

/// Where streaming encryption and decryption write their output.
public protocol AgeByteSink {
    mutating func write(_ bytes: UnsafeRawBufferPointer) throws
}

extension AgeByteSource {
    /// Appends to `buffer` until it holds `count` bytes; returns true if the input ended first.
    mutating func fill(_ buffer: inout [UInt8], upTo count: Int) throws -> Bool {
        guard buffer.count < count else { return false }
        var scratch = [UInt8](repeating: 0, count: min(count - buffer.count, 1 << 16))
        while buffer.count < count {
            let want = min(scratch.count, count - buffer.count)
            let got = try scratch.withUnsafeMutableBytes { try read(into: UnsafeMutableRawBufferPointer(rebasing: $0[..<want])) }
            if got == 0 { return true }
            buffer.append(contentsOf: scratch[..<got])
        }
        return false
    }
}

/// An open file descriptor as a source (a file, a pipe, standard input). Blocking reads.
public struct FileDescriptorSource: AgeByteSource {
    public let descriptor: Int32
    /// Named in errors.
    public let path: String

    public init(descriptor: Int32, path: String) {
        self.descriptor = descriptor
        self.path = path
    }

    public mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        while true {
            let got = Glibc.read(descriptor, buffer.baseAddress, buffer.count)
            if got >= 0 { return got }
            if errno != EINTR { throw AgeError.io(operation: "read", path: path, errno: errno) }
        }
    }
}

/// An open file descriptor as a sink. Blocking writes.
public struct FileDescriptorSink: AgeByteSink {
    public let descriptor: Int32
    public let path: String

    public init(descriptor: Int32, path: String) {
        self.descriptor = descriptor
        self.path = path
    }

    public mutating func write(_ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let written = Glibc.write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { throw AgeError.io(operation: "write", path: path, errno: errno) }
            offset += written
        }
    }
}

/// Collects output in memory.
public struct ByteArraySink: AgeByteSink {
    public var bytes: [UInt8] = []
    public init() {}
    public mutating func write(_ chunk: UnsafeRawBufferPointer) throws { bytes.append(contentsOf: chunk) }
}

/// Reads from an in-memory buffer, at most `readSize` bytes per read (tests use small sizes to
/// exercise every boundary).
public struct ByteArraySource: AgeByteSource {
    public let bytes: [UInt8]
    public let readSize: Int
    private var offset = 0

    public init(_ bytes: [UInt8], readSize: Int = 1 << 16) {
        self.bytes = bytes
        self.readSize = max(1, readSize)
    }

    public mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let count = min(buffer.count, readSize, bytes.count - offset)
        guard count > 0 else { return 0 }
        bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + offset, byteCount: count) }
        offset += count
        return count
    }
}
