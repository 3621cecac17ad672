import Foundation
import TestSupport

/// Runs Debian's `openssl` binary in a scratch directory: the interop peer for DeviceKeys.
struct OpenSSLTool {
    let scratch: ScratchDirectory

    init() throws { scratch = try ScratchDirectory(label: "openssl") }

    func path(_ name: String) -> String { scratch.path(name) }

    /// openssl's standard output; throws with its standard error when it fails.
    @discardableResult
    func run(_ arguments: String...) async throws -> [UInt8] {
        try await ChildProcess.run("/usr/bin/openssl", arguments, in: scratch.url, timeout: .seconds(120))
            .requireSuccess().stdoutBytes
    }

    func write(_ name: String, _ bytes: [UInt8]) throws { try scratch.write(name, bytes) }

    func read(_ name: String) throws -> [UInt8] { try scratch.read(name) }

    func remove() { scratch.remove() }
}

func sha256Hex(_ bytes: [UInt8], using tool: OpenSSLTool) async throws -> String {
    try tool.write("digest-input", bytes)
    let out = String(decoding: try await tool.run("dgst", "-sha256", "-r", "digest-input"), as: UTF8.self)
    return String(out.prefix(64))
}
