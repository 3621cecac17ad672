import Foundation

/// A plain Server-Sent Events client of the dashboard's `/events` (no browser): the dashboard
/// bench's extra viewers. It reads on its own thread with blocking socket calls (never on Swift's
/// cooperative pool) and keeps what the bench's browser page keeps: when a `change` naming a
/// device arrived, and when a `floor` update first showed a device on a new step (ms since 1970,
/// the host's clock, like the page's Date.now()).
final class EventStreamListener: @unchecked Sendable {
    private let lock = NSLock()
    private var changes: [String: [Double]] = [:]
    private var floors: [String: [(step: String, at: Double)]] = [:]
    private var lastStep: [String: String] = [:]
    private var connected = false
    private var stopped = false
    private var reconnectCount = 0
    private var failure: String?
    private var fd: Int32 = -1
    private let port: Int

    /// Starts reading 127.0.0.1:`port`'s `/events` on a thread of its own. Like a browser's
    /// EventSource it reconnects (after the stream's `retry: 1000`) when the dashboard drops it
    /// as a slow viewer; `reconnects` counts that.
    init(port: Int) {
        self.port = port
        let thread = Thread { [self] in
            while !lock.withLock({ stopped }) {
                readStream()
                if lock.withLock({ stopped }) { break }
                lock.withLock { reconnectCount += 1 }
                Thread.sleep(forTimeInterval: 1)
            }
        }
        thread.start()
    }

    /// Ends the stream (the reading thread sees end of file and stops).
    func stop() {
        let socket = lock.withLock { stopped = true; return fd }
        if socket >= 0 { shutdown(socket, Int32(SHUT_RDWR)) }
    }

    var isConnected: Bool { lock.withLock { connected } }
    var reconnects: Int { lock.withLock { reconnectCount } }
    var error: String? { lock.withLock { failure } }
    var arrivals: (changes: [String: [Double]], floors: [String: [(step: String, at: Double)]]) {
        lock.withLock { (changes, floors) }
    }

    private func openSocket() -> Int32? {
        let socket = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socket >= 0 else { lock.withLock { failure = "socket: errno \(errno)" }; return nil }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        let ok = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard ok else { close(socket); lock.withLock { failure = "connect to 127.0.0.1:\(port): errno \(errno)" }; return nil }
        let request = "GET /events HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nAccept: text/event-stream\r\n\r\n"
        _ = request.withCString { send(socket, $0, strlen($0), 0) }
        return socket
    }

    private func readStream() {
        guard let socket = openSocket() else { return }
        lock.withLock { fd = socket }
        defer { lock.withLock { fd = -1 }; close(socket) }
        var raw: [UInt8] = []
        var headerDone = false
        var chunked = false
        var body: [UInt8] = []
        var scanned = 0
        var buffer = [UInt8](repeating: 0, count: 1 << 18)
        while true {
            let count = recv(socket, &buffer, buffer.count, 0)
            if count <= 0 { return }
            raw.append(contentsOf: buffer[0..<count])
            if !headerDone {
                guard let end = Self.find("\r\n\r\n", in: raw) else { continue }
                let head = String(decoding: raw[0..<end], as: UTF8.self)
                guard head.hasPrefix("HTTP/1.1 200") else {
                    lock.withLock { failure = "no stream: \(head.prefix(100))" }
                    return
                }
                chunked = head.lowercased().contains("transfer-encoding: chunked")
                raw.removeFirst(end + 4)
                headerDone = true
                lock.withLock { connected = true }
            }
            if chunked {
                // Chunked framing: a hex size line, that many bytes, CRLF.
                var offset = 0
                while let lineEnd = Self.find("\r\n", in: raw, from: offset) {
                    let sizeText = String(decoding: raw[offset..<lineEnd], as: UTF8.self).split(separator: ";").first ?? ""
                    guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16) else {
                        lock.withLock { failure = "bad chunk size \(sizeText.prefix(20))" }
                        return
                    }
                    if size == 0 { return }
                    guard raw.count >= lineEnd + 2 + size + 2 else { break }
                    body.append(contentsOf: raw[(lineEnd + 2)..<(lineEnd + 2 + size)])
                    offset = lineEnd + 2 + size + 2
                }
                raw.removeFirst(offset)
            } else {
                body.append(contentsOf: raw)
                raw.removeAll()
            }
            // Events end at a blank line; only the bytes not yet searched are searched.
            var consumed = 0
            while let end = Self.find("\n\n", in: body, from: max(consumed, scanned - 1)) {
                let at = Date().timeIntervalSince1970 * 1000
                record(Array(body[consumed..<end]), at: at)
                consumed = end + 2
                scanned = consumed
            }
            body.removeFirst(consumed)
            scanned = body.count
        }
    }

    private func record(_ bytes: [UInt8], at: Double) {
        let event = String(decoding: bytes, as: UTF8.self)
        var type = "message"
        var data: [Substring] = []
        for line in event.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("event: ") { type = String(line.dropFirst(7)) }
            if line.hasPrefix("data: ") { data.append(line.dropFirst(6)) } else if line == "data:" { data.append("") }
        }
        let text = data.joined(separator: "\n")
        lock.withLock {
            if type == "change" {
                if let json = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
                   json["table"] as? String == "job_devices", let device = json["device"] as? String {
                    changes[device, default: []].append(at)
                }
            } else if type == "floor" {
                for (device, step) in Self.tiles(in: text) where lastStep[device] != step {
                    lastStep[device] = step
                    floors[device, default: []].append((step, at))
                }
            }
        }
    }

    /// The (data-device, data-step) of each `<div class="tile" …>` tag (bytes and memmem: fast
    /// enough in a debug build for 19 streams of whole-floor updates).
    static func tiles(in html: String) -> [(String, String)] {
        let bytes = Array(html.utf8)
        var out: [(String, String)] = []
        var offset = 0
        while let start = find("<div class=\"tile\"", in: bytes, from: offset) {
            guard let close = find(">", in: bytes, from: start) else { break }
            let tag = Array(bytes[start..<close])
            if let device = attribute("data-device=\"", in: tag) { out.append((device, attribute("data-step=\"", in: tag) ?? "")) }
            offset = close
        }
        return out
    }

    private static func attribute(_ prefix: String, in tag: [UInt8]) -> String? {
        guard let start = find(prefix, in: tag) else { return nil }
        let valueStart = start + prefix.utf8.count
        guard let end = find("\"", in: tag, from: valueStart) else { return nil }
        return String(decoding: tag[valueStart..<end], as: UTF8.self)
    }

    /// memchr for the first byte, memcmp for the rest, from `from` (a debug build's byte loop
    /// cannot keep up with the stream; Glibc's module has no memmem).
    private static func find(_ needle: String, in haystack: [UInt8], from: Int = 0) -> Int? {
        let pattern = Array(needle.utf8)
        guard from >= 0, from < haystack.count, !pattern.isEmpty else { return nil }
        return haystack.withUnsafeBytes { bytes in
            pattern.withUnsafeBytes { wanted in
                let base = bytes.baseAddress!
                var position = from
                while position + wanted.count <= bytes.count {
                    guard let hit = memchr(base + position, Int32(pattern[0]), bytes.count - position) else { return nil }
                    let index = base.distance(to: UnsafeRawPointer(hit))
                    guard index + wanted.count <= bytes.count else { return nil }
                    if memcmp(base + index, wanted.baseAddress!, wanted.count) == 0 { return index }
                    position = index + 1
                }
                return nil
            }
        }
    }
}

struct BrowserBenchFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
