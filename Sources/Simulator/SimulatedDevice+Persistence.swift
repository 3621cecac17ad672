import DeviceBus
import ParticlePlatform
import Foundation

extension SimulatedDevice {
    // MARK: - Persistence

    struct Record: Codable {
        var platform: String
        var deviceID: String
        var mode: USBMode
        var protected: Bool
        var faults: SimulatedFaults
        var pages: [[UInt32]]
    }

    /// Saves the device (identity, mode, memories) to `directory`, one JSON record and one binary
    /// file per alt holding the written 4 KB pages.
    public func save(to directory: URL) throws(SimulatorError) {
        let (record, contents) = lock.withLock { () -> (Record, [[UInt8]]) in
            var pageLists: [[UInt32]] = []
            var contents: [[UInt8]] = []
            for memory in memories {
                let keys = memory.pages.keys.sorted()
                pageLists.append(keys)
                contents.append(keys.flatMap { memory.pages[$0]! })
            }
            return (Record(platform: platform.name, deviceID: deviceID, mode: mode, protected: protected, faults: faults,
                           pages: pageLists), contents)
        }
        do {
            // alt1.bin is the DCT, with the device's private key: owner-only, like a key file.
            try PrivateStateFiles.makeDirectory(directory)
            for (i, bytes) in contents.enumerated() {
                try PrivateStateFiles.write(Data(bytes), to: directory.appendingPathComponent("alt\(i).bin"))
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try PrivateStateFiles.write(encoder.encode(record), to: directory.appendingPathComponent("device.json"))
        } catch {
            throw .stateFile(path: directory.path, detail: "\(error)")
        }
    }

    /// Loads a device saved with `save(to:)`. It comes back attached, in the mode it was saved in.
    public static func load(from directory: URL, timeScale: Double = 1,
                            cloudConnection: CloudConnection = .standard,
                            cloudLink: SimulatedCloudLink? = nil) throws(SimulatorError) -> SimulatedDevice {
        let record: Record
        var contents: [[UInt8]] = []
        do {
            record = try JSONDecoder().decode(Record.self, from: Data(contentsOf: directory.appendingPathComponent("device.json")))
            for i in record.pages.indices {
                contents.append([UInt8](try Data(contentsOf: directory.appendingPathComponent("alt\(i).bin"))))
            }
        } catch {
            throw .stateFile(path: directory.path, detail: "\(error)")
        }
        let platform: Platform
        do { platform = try Platform.named(record.platform) } catch { throw .unsupportedPlatform(record.platform) }
        let device = try SimulatedDevice(platform: platform, deviceID: record.deviceID, mode: .dfu, protected: record.protected,
                                         faults: record.faults, timeScale: timeScale,
                                         cloudConnection: cloudConnection, cloudLink: cloudLink)
        try device.lock.locked { () throws(SimulatorError) in
            for (alt, pages) in record.pages.enumerated() where alt < device.memories.count {
                let bytes = contents[alt]
                guard bytes.count == pages.count * SimulatedMemory.pageSize else {
                    throw .stateFile(path: directory.path, detail: "alt\(alt).bin has \(bytes.count) bytes for \(pages.count) pages")
                }
                var restored: [UInt32: [UInt8]] = [:]
                for (i, page) in pages.enumerated() {
                    restored[page] = Array(bytes[i * SimulatedMemory.pageSize..<(i + 1) * SimulatedMemory.pageSize])
                }
                device.memories[alt].restore(pages: restored)
            }
            device.mode = record.mode
        }
        if record.mode == .normal { device.applicationAlreadyRunning() }
        return device
    }
}

extension SimulatedMemory {
    /// Direct write with no flash rules (DCT semantics): used by factory programming and Device OS.
    mutating func overwrite(_ address: UInt32, _ bytes: [UInt8]) {
        if kind == .norFlash {
            var copy = SimulatedMemory(layout: layout, kind: .dct)
            copy.restore(pages: pages)
            copy.program(address, bytes)
            restore(pages: copy.pages)
        } else {
            program(address, bytes)
        }
    }
}

/// Simulator state on disk holds generated private keys (the DCT), so folders are created 0700
/// and files 0600, whatever the umask.
enum PrivateStateFiles {
    /// Creates `directory` (and missing parents) owner-only; an existing one is made owner-only too.
    static func makeDirectory(_ directory: URL) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        try FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: directory.path)
    }

    /// Writes atomically (a temporary file renamed over `file`, inside an owner-only folder), then
    /// makes the file owner-only.
    static func write(_ data: Data, to file: URL) throws {
        try data.write(to: file, options: .atomic)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: file.path)
    }
}
