import Foundation
import Registry

/// Findings kept on disk while the listing streams, so they can be printed after it without
/// holding them in memory (a broken product can have a finding per registration); counted by
/// severity. The file is created in $TMPDIR (or /tmp) and unlinked at once, so nothing is left
/// behind however keyline ends. Findings hold IDs, fingerprints and messages, never key material.
///
/// Records are length-prefixed fields (no text encoder per finding). Every write is checked: a
/// full disk (ENOSPC), a file size limit (EFBIG) or an I/O error stops the audit with
/// `AuditError.findingsUnwritable` naming the folder, instead of printing an incomplete audit.
public final class FindingSpool {
    private let fd: Int32
    public let directory: String
    private var buffer: [UInt8] = []
    public private(set) var counts: [AuditSeverity: Int] = [:]
    public private(set) var codes: [String: Int] = [:]

    public init(directory: String = FindingSpool.defaultDirectory) throws(AuditError) {
        self.directory = directory
        var template = Array((directory + "/keyline-audit-findings.XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw Self.failure("create", directory: directory, errno: errno) }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        self.fd = fd
        buffer.reserveCapacity(1 << 16)
    }

    deinit { close(fd) }

    public static var defaultDirectory: String {
        ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
    }

    public var total: Int { counts.values.reduce(0, +) }

    public func add(_ finding: AuditFinding) throws(AuditError) {
        counts[finding.severity, default: 0] += 1
        codes[finding.code, default: 0] += 1
        buffer.append(UInt8(AuditSeverity.allCases.firstIndex(of: finding.severity)!))
        for field in [finding.code, finding.productID, finding.deviceID, finding.fingerprint,
                      finding.jobID.map(String.init), finding.objectKey, finding.message] {
            Self.appendField(field, to: &buffer)
        }
        if buffer.count >= 1 << 16 { try flush() }
    }

    /// Every finding, in the order added.
    public func forEach(_ body: (AuditFinding) throws -> Void) throws {
        try flush()
        guard lseek(fd, 0, SEEK_SET) == 0 else { throw Self.failure("rewind", directory: directory, errno: errno) }
        var reader = SpoolReader(fd: fd)
        while let severity = try reader.byte() {
            guard Int(severity) < AuditSeverity.allCases.count else { throw Self.corrupt(directory) }
            var fields: [String?] = []
            for _ in 0..<7 { fields.append(try reader.field()) }
            guard let code = fields[0], let message = fields[6] else { throw Self.corrupt(directory) }
            try body(AuditFinding(AuditSeverity.allCases[Int(severity)], code, productID: fields[1], deviceID: fields[2],
                                  fingerprint: fields[3], jobID: fields[4].flatMap { Int64($0) }, objectKey: fields[5],
                                  message: message))
        }
    }

    private func flush() throws(AuditError) {
        var offset = 0
        while offset < buffer.count {
            let written = buffer.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if written < 0 {
                if errno == EINTR { continue }
                throw Self.failure("write", directory: directory, errno: errno)
            }
            offset += written
        }
        buffer.removeAll(keepingCapacity: true)
    }

    /// A field: 0xFFFFFFFF for nil, else its UTF-8 length (4 bytes, little-endian) and bytes.
    private static func appendField(_ text: String?, to buffer: inout [UInt8]) {
        guard let text else { buffer.append(contentsOf: [0xff, 0xff, 0xff, 0xff]); return }
        let count = UInt32(clamping: text.utf8.count)
        withUnsafeBytes(of: count.littleEndian) { buffer.append(contentsOf: $0) }
        buffer.append(contentsOf: text.utf8.prefix(Int(count)))
    }

    static func failure(_ operation: String, directory: String, errno code: Int32) -> AuditError {
        .findingsUnwritable(operation: operation, directory: directory, errno: code)
    }

    private static func corrupt(_ directory: String) -> AuditError { .findingsDamaged(directory: directory) }
}

/// Reads the spool back a block at a time.
private struct SpoolReader {
    let fd: Int32
    private var block = [UInt8](repeating: 0, count: 1 << 16)
    private var start = 0
    private var end = 0

    init(fd: Int32) { self.fd = fd }

    /// The next byte, or nil at the end of the file.
    mutating func byte() throws(AuditError) -> UInt8? {
        if start == end {
            let count = block.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { return try byte() }
                throw FindingSpool.failure("read", directory: "the spool", errno: errno)
            }
            if count == 0 { return nil }
            (start, end) = (0, count)
        }
        defer { start += 1 }
        return block[start]
    }

    mutating func bytes(_ count: Int) throws(AuditError) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(count)
        for _ in 0..<count {
            guard let next = try byte() else { throw FindingSpool.failure("read", directory: "the spool", errno: EIO) }
            out.append(next)
        }
        return out
    }

    mutating func field() throws(AuditError) -> String? {
        let length = try bytes(4).enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) }
        if length == UInt32.max { return nil }
        return String(decoding: try bytes(Int(length)), as: UTF8.self)
    }
}
