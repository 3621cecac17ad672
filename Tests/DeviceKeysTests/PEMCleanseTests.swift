import COpenSSL
import Foundation
import Testing
import TestSupport
@testable import DeviceKeys

// OpenSSL's allocator, replaced in a child process (CRYPTO_set_mem_functions works only before
// OpenSSL's first allocation): every block carries its size, and `free` looks at the bytes it is
// handed back. Globals, because C function pointers cannot capture.
nonisolated(unsafe) private var secretNeedle: [UInt8] = []
nonisolated(unsafe) private var watching = false
nonisolated(unsafe) private var freedWithSecret = 0
private let header = 16

private let trackingMalloc: @convention(c) (Int, UnsafePointer<CChar>?, Int32) -> UnsafeMutableRawPointer? = { size, _, _ in
    guard let base = malloc(size + header) else { return nil }
    base.storeBytes(of: size, as: Int.self)
    return base + header
}

private let trackingRealloc: @convention(c) (UnsafeMutableRawPointer?, Int, UnsafePointer<CChar>?, Int32) -> UnsafeMutableRawPointer? = { pointer, size, _, _ in
    guard let pointer else { return trackingMalloc(size, nil, 0) }
    guard let base = realloc(pointer - header, size + header) else { return nil }
    base.storeBytes(of: size, as: Int.self)
    return base + header
}

private let trackingFree: @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<CChar>?, Int32) -> Void = { pointer, _, _ in
    guard let pointer else { return }
    let size = (pointer - header).load(as: Int.self)
    if watching, !secretNeedle.isEmpty, size >= secretNeedle.count {
        let bytes = UnsafeRawBufferPointer(start: pointer, count: size)
        let needle = secretNeedle
        if (0...(size - needle.count)).contains(where: { bytes[$0..<($0 + needle.count)].elementsEqual(needle) }) {
            freedWithSecret += 1
        }
    }
    free(pointer - header)
}

/// A private key's bytes read from PEM go back to OpenSSL's heap overwritten (OPENSSL_clear_free),
/// not as they were: checked with OpenSSL's own allocator hooks, in a child process of this test
/// binary started before OpenSSL allocates anything.
@Suite struct PEMCleanseTests {
    static let childVariable = "KEYLINE_TEST_PEM_CLEANSE_CHILD"

    @Test func privateKeyBytesReadFromPEMAreCleansedBeforeTheyAreFreed() async throws {
        let scratch = try ScratchDirectory(label: "pem-cleanse")
        defer { scratch.remove() }
        let key = try DevicePrivateKey.generate(.ec)
        try scratch.write("key.pem", Array(try key.pem().utf8))
        // SEC1: 30 77 02 01 01 04 20, then the 32-byte private scalar.
        let scalar = Array(key.der[7..<39])
        let testBinary = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        let child = try await ChildProcess.run(
            testBinary, ["--testing-library", "swift-testing", "--filter", "PEMCleanseTests/inTheChild"],
            environment: [Self.childVariable: scratch.path("key.pem"),
                          "KEYLINE_TEST_PEM_SCALAR": scalar.map { String(format: "%02x", $0) }.joined()],
            timeout: .seconds(120))
        #expect(!child.terminatedBySignal && child.status == 0, "\(child.stdout.suffix(2000))\n\(child.stderr.suffix(2000))")
        #expect(child.stdout.contains("hooked: 1, blocks: 1, freed with the key: 0"), "\(child.stdout.suffix(2000))")
    }

    /// Runs only in the child the test above starts.
    @Test(.enabled(if: ProcessInfo.processInfo.environment[childVariable] != nil))
    func inTheChild() throws {
        let environment = ProcessInfo.processInfo.environment
        let hooked = CRYPTO_set_mem_functions(trackingMalloc, trackingRealloc, trackingFree)
        let pem = Array(try Data(contentsOf: URL(fileURLWithPath: environment[Self.childVariable]!)))
        let hex = Array(environment["KEYLINE_TEST_PEM_SCALAR"]!.utf8)
        secretNeedle = stride(from: 0, to: hex.count - 1, by: 2).compactMap { UInt8(String(decoding: hex[$0...($0 + 1)], as: UTF8.self), radix: 16) }
        watching = true
        let blocks = PEMArmor.blocks(pem)
        watching = false
        print("hooked: \(hooked), blocks: \(blocks?.count ?? 0), freed with the key: \(freedWithSecret)")
    }
}
