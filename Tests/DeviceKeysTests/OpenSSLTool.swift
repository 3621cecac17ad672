import Foundation

/// Runs Debian's `openssl` binary in a scratch directory: the interop peer for DeviceKeys.
struct OpenSSLTool {
    let directory: URL

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("keyline-openssl-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    @discardableResult
    func run(_ arguments: String...) throws -> [UInt8] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = arguments
        process.currentDirectoryURL = directory
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errors = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw ToolFailure(command: "openssl " + arguments.joined(separator: " "), output: String(decoding: errors, as: UTF8.self))
        }
        return Array(data)
    }

    func write(_ name: String, _ bytes: [UInt8]) throws {
        try Data(bytes).write(to: directory.appendingPathComponent(name))
    }

    func read(_ name: String) throws -> [UInt8] {
        Array(try Data(contentsOf: directory.appendingPathComponent(name)))
    }

    func remove() { try? FileManager.default.removeItem(at: directory) }
}

struct ToolFailure: Error, CustomStringConvertible {
    var command: String
    var output: String
    var description: String { "\(command) failed: \(output)" }
}

func sha256Hex(_ bytes: [UInt8], using tool: OpenSSLTool) throws -> String {
    try tool.write("digest-input", bytes)
    let out = String(decoding: try tool.run("dgst", "-sha256", "-r", "digest-input"), as: UTF8.self)
    return String(out.prefix(64))
}
