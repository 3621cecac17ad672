import Foundation

/// The per-device logs of a job: `<directory>/job-<id>/<device-id>.log` (or `port-<path>.log`
/// before the device ID is known), one line per event, appended across runs and resumes so a
/// device's whole history in the job is in one file. Written on a serial queue: a device task
/// never waits for the disk. Events carry no key material, so neither do the logs.
public final class JobLog: @unchecked Sendable {
    public let directory: URL
    private let queue = DispatchQueue(label: "keyline.pipeline.job-log")
    private var handles: [String: FileHandle] = [:]   // touched only on `queue`
    private var failed = false                        // touched only on `queue`

    /// Creates `<root>/job-<id>/` (0700: logs name devices and ports of a production line).
    public init(root: URL, jobID: Int64) throws {
        directory = root.appendingPathComponent("job-\(jobID)", isDirectory: true)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
    }

    public func record(_ event: ProvisioningEvent) {
        guard event.type != .progress || event.done == event.total else { return }  // logs keep milestones only
        // File names come only from a well-formed device ID or port path: a device's USB serial is
        // whatever the device says, and must never pick a path.
        let name: String
        if let deviceID = event.deviceID, Self.isDeviceID(deviceID) {
            name = deviceID
        } else if let port = event.port, !port.isEmpty, port.utf8.allSatisfy({ (48...57).contains($0) || $0 == 45 || $0 == 46 }) {
            name = "port-" + port
        } else {
            name = "job"
        }
        let line = Self.format(event) + "\n"
        queue.async { [self] in
            guard !failed else { return }
            do {
                let handle = try handles[name] ?? open(name)
                handles[name] = handle
                try handle.write(contentsOf: Data(line.utf8))
            } catch {
                // A full log disk must not stop the line; the first failure is said once on stderr.
                failed = true
                FileHandle.standardError.write(Data("keyline: job log \(directory.path) cannot be written (\(error)); logging stopped\n".utf8))
            }
        }
    }

    /// Waits until every line recorded so far is written and synced, and closes the files; the
    /// caller waits without holding a thread (fsync can take a while).
    public func close() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            queue.async { [self] in
                for handle in handles.values { try? handle.synchronize(); try? handle.close() }
                handles.removeAll()
                continuation.resume()
            }
        }
    }

    private func open(_ name: String) throws -> FileHandle {
        let path = directory.appendingPathComponent(name + ".log").path
        let fd = Foundation.open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: path]) }
        return FileHandle(fileDescriptor: fd, closeOnDealloc: true)
    }

    static func isDeviceID(_ text: String) -> Bool {
        text.utf8.count == 24 && text.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }

    static func format(_ event: ProvisioningEvent) -> String {
        var parts = [event.time.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true)), event.type.rawValue]
        if let port = event.port { parts.append("port=\(port)") }
        if let step = event.step { parts.append("step=\(step.rawValue)") }
        if let state = event.state { parts.append("state=\(state.rawValue)") }
        if let outcome = event.outcome { parts.append("outcome=\(outcome.rawValue)") }
        if let attempt = event.attempt { parts.append("attempt=\(attempt)") }
        if let total = event.total { parts.append("bytes=\(event.done ?? 0)/\(total)") }
        if let fingerprint = event.fingerprint { parts.append("fingerprint=\(fingerprint)") }
        if let failureClass = event.failureClass { parts.append("class=\(failureClass)") }
        if let elapsed = event.elapsed { parts.append(String(format: "elapsed=%.3fs", elapsed)) }
        if let message = event.message { parts.append("— " + message) }
        return parts.joined(separator: " ")
    }
}
