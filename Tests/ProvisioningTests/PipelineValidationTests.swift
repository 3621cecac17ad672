import FailurePolicy
import Foundation
import ParticlePlatform
import Provisioning
import Simulator
import Testing

/// Every problem is reported at once, each at its own line, with advice.
@Suite struct PipelineValidation {
    /// The line (1-based) of the first line containing `marker`.
    static func line(_ lines: [String], _ marker: String) -> Int {
        (lines.firstIndex { $0.contains(marker) } ?? -100) + 1
    }

    static func expectProblem(_ problems: [PipelineProblem], at line: Int, key: String, _ text: String,
                              sourceLocation: SourceLocation = #_sourceLocation) {
        let match = problems.first { $0.line == line && $0.keyPath == key && $0.message.contains(text) }
        #expect(match != nil, "no problem at line \(line) \(key) containing '\(text)' in:\n\(problems.map(\.description).joined(separator: "\n"))",
                sourceLocation: sourceLocation)
        if let match { #expect(!match.advice.isEmpty, sourceLocation: sourceLocation) }
    }

    @Test func allProblemsAtOnceWithTheirLines() throws {
        let scratch = try PipelineScratch()
        try scratch.dir.write("firmware/raw.bin", [UInt8](repeating: 0x55, count: 4096))
        var corrupt = SyntheticFirmware.make(platform: .photon, function: .systemPart, index: 1, size: nil)
        corrupt[1000] ^= 1
        try scratch.dir.write("firmware/corrupt.bin", corrupt)
        try scratch.firmware("photon-system2.bin", .photon, .systemPart, 2)
        try scratch.dir.write("bad-recipients.txt", Array("age1notarecipient\n".utf8))
        try scratch.dir.write("server.pem", Array("not a key".utf8))
        let lines = [
            "name: broken",
            "product: 5",                                   // wrong type
            "platform: photon",
            "firmware:",
            "  - file: firmware/missing.bin",               // missing file
            "  - file: firmware/boron-user.bin",            // another platform
            "  - file: firmware/raw.bin",                   // raw image outside the map
            "    address: 0x08000000",
            "  - file: firmware/photon-system2.bin",        // fine
            "  - file: firmware/raw.bin",                   // overlaps the system part 2
            "    address: 0x08060000",
            "  - file: firmware/corrupt.bin",               // CRC
            "  - file: firmware/photon-user.bin",
            "    alt: 1",                                   // not internal flash
            "  - file: firmware/photon-user.bin",
            "    adress: 0x080A0000",                       // unknown key
            "server:",
            "  key: server.pem",                            // invalid key
            "  port: 70000",                                // out of range
            "key_mode: cloud",                              // unknown mode
            "escrow:",
            "  recipients: bad-recipients.txt",             // does not parse
            "  store: ${UNSET_STORE}",                      // unset variable
            "concurency: 4",                                // misspelt
            "concurrency: 0",                               // out of range
            "retries:",
            "  attempts: 99",                               // out of range
            "  initial_backoff: 1 minute",                  // not a duration
            "devices:",
            "  serials: [nope]",                            // not a device ID
            "  ports: [usb3]",                              // not a port path
        ]
        let problems = scratch.problems(lines)
        let l = { (marker: String) in Self.line(lines, marker) }
        Self.expectProblem(problems, at: l("product: 5"), key: "product", "expected a mapping")
        Self.expectProblem(problems, at: l("missing.bin"), key: "firmware[0].file", "no such file")
        Self.expectProblem(problems, at: l("boron-user.bin"), key: "firmware[1].file", "built for Boron")
        Self.expectProblem(problems, at: l("address: 0x08000000"), key: "firmware[2].address", "outside Photon's flash map")
        Self.expectProblem(problems, at: l("address: 0x08060000") - 1, key: "firmware[4]", "overlaps firmware[3]")
        Self.expectProblem(problems, at: l("corrupt.bin"), key: "firmware[5].file", "CRC-32 check failed")
        Self.expectProblem(problems, at: l("alt: 1"), key: "firmware[6].alt", "not internal flash")
        Self.expectProblem(problems, at: l("adress"), key: "firmware[7].adress", "unknown key")
        #expect(problems.contains { $0.keyPath == "firmware[7].adress" && $0.advice.contains("'address'") })
        Self.expectProblem(problems, at: l("server.pem"), key: "server.key", "not a public key")
        Self.expectProblem(problems, at: l("port: 70000"), key: "server.port", "out of range")
        Self.expectProblem(problems, at: l("key_mode"), key: "key_mode", "unknown key mode")
        Self.expectProblem(problems, at: l("bad-recipients"), key: "escrow.recipients", "age1notareci")
        Self.expectProblem(problems, at: l("UNSET_STORE"), key: "escrow.store", "UNSET_STORE is not set")
        Self.expectProblem(problems, at: l("concurency"), key: "concurency", "unknown key")
        #expect(problems.contains { $0.keyPath == "concurency" && $0.advice == "did you mean 'concurrency'?" })
        Self.expectProblem(problems, at: l("concurrency: 0"), key: "concurrency", "out of range 1…128")
        Self.expectProblem(problems, at: l("attempts: 99"), key: "retries.attempts", "out of range")
        Self.expectProblem(problems, at: l("1 minute"), key: "retries.initial_backoff", "not a duration")
        Self.expectProblem(problems, at: l("serials"), key: "devices.serials", "not a Photon device ID")
        Self.expectProblem(problems, at: l("usb3"), key: "devices.ports", "not a USB port path")
        #expect(problems.count == 19, "\(problems.map(\.description).joined(separator: "\n"))")
        #expect(problems.allSatisfy { $0.file == scratch.dir.path("pipeline.yaml") && $0.column != nil })
        #expect(problems.map(\.line) == problems.map(\.line).sorted())
    }

    /// Issue 12: files a pipeline names are regular files of a bounded size; a device such as
    /// /dev/urandom was read without end, a directory reported only as "cannot be read".
    @Test func devicesAndDirectoriesAreNamedNotRead() throws {
        let scratch = try PipelineScratch()
        try FileManager.default.createDirectory(atPath: scratch.dir.path("firmware/folder.bin"), withIntermediateDirectories: true)
        try scratch.dir.write("big.pem", [UInt8](repeating: 0x41, count: 9000))
        var lines = validPhoton.map { $0.replacingOccurrences(of: "recipients.txt", with: "/dev/zero") }
        lines.insert("  - file: firmware/folder.bin", at: 7)
        lines += ["server:", "  key: /dev/urandom"]
        let problems = scratch.problems(lines)
        Self.expectProblem(problems, at: Self.line(lines, "folder.bin"), key: "firmware[1].file", "a directory, not a regular file")
        Self.expectProblem(problems, at: Self.line(lines, "/dev/zero"), key: "escrow.recipients", "a character device, not a regular file")
        Self.expectProblem(problems, at: Self.line(lines, "/dev/urandom"), key: "server.key", "a character device, not a regular file")
        let big = validPhoton + ["server:", "  key: big.pem"]
        Self.expectProblem(scratch.problems(big), at: Self.line(big, "big.pem"), key: "server.key", "larger than 8192 bytes")
    }

    @Test func unknownPlatformSuggestsTheClosest() throws {
        let scratch = try PipelineScratch()
        let lines = validPhoton.map { $0.replacingOccurrences(of: "platform: photon", with: "platform: photn") }
        let problems = scratch.problems(lines)
        Self.expectProblem(problems, at: Self.line(lines, "photn"), key: "platform", "unknown platform 'photn'")
        #expect(problems.first?.advice == "did you mean 'photon'?")
    }

    @Test func missingSections() throws {
        let scratch = try PipelineScratch()
        let problems = scratch.problems(["name: empty", "firmware: []"])
        #expect(Set(problems.map(\.keyPath)) == ["product", "platform", "escrow"])
        #expect(problems.allSatisfy { $0.line == 1 })
    }

    @Test func wrongServerKeyAlgorithm() throws {
        let scratch = try PipelineScratch()
        // Particle's EC server key on a TCP (RSA) platform.
        try scratch.dir.write("ec.der", Array(ParticleServerKeys.udpBlob.prefix(91)))
        let lines = validPhoton + ["server:", "  key: ec.der"]
        Self.expectProblem(scratch.problems(lines), at: Self.line(lines, "ec.der"), key: "server.key", "needs an RSA server key")
    }

    @Test func modulesOverlappingTheirNeighbours() throws {
        // A Boron compat user part (0xD4000) inside the 256 KB user part (0xB4000) region it shares.
        let scratch = try PipelineScratch()
        try scratch.firmware("big.bin", .boron, .userPart, 2, size: 200_000)
        try scratch.firmware("compat.bin", .boron, .userPart, 1)
        var withImage = validPhoton.map { $0.replacingOccurrences(of: "photon", with: "boron") }
            .map { $0.replacingOccurrences(of: "firmware/boron-user.bin", with: "firmware/big.bin") }
        withImage.insert("  - file: firmware/compat.bin", at: 7)   // line 8, after big.bin
        let problems = scratch.problems(withImage)
        Self.expectProblem(problems, at: 8, key: "firmware[1]", "overlaps firmware[0]")
    }

    @Test func syntaxErrorsCarryTheirLine() throws {
        let scratch = try PipelineScratch()
        let problems = scratch.problems(["name: x", "product:", "  id: [1, 2", "platform: photon"])
        #expect(problems.count == 1)
        #expect(problems.first?.message.contains("not valid YAML") == true)
        #expect((problems.first?.line ?? 0) >= 3)
    }

    @Test func unreadablePipeline() {
        do {
            _ = try PipelineLoader.load(path: "/nonexistent/pipeline.yaml", environment: [:], overrides: .none)
            Issue.record("loaded a missing file")
        } catch {
            #expect(error.problems.count == 1 && error.problems[0].line == 0 && error.problems[0].message == "no such file")
            #expect(error.failureClass == .badInput)
            #expect(error.description.contains("/nonexistent/pipeline.yaml: no such file"))
        }
    }

    @Test func commandLineConcurrencyOutOfRange() throws {
        let scratch = try PipelineScratch()
        #expect(throws: PipelineValidationError.self) { try scratch.load(validPhoton, overrides: PipelineOverrides(concurrency: 0)) }
    }
}

/// `escrow.store` may name an S3 store; its URI is checked when the pipeline loads.
@Suite struct PipelineS3Store {
    @Test func s3StoreURIsLoadAndBadOnesAreReported() throws {
        let scratch = try PipelineScratch()
        var lines = validPhoton
        lines[lines.count - 1] = "  store: s3://keyline-escrow/line-1?lock=COMPLIANCE&retain-days=3650"
        let p = try scratch.load(lines)
        #expect(p.escrow.store == "s3://keyline-escrow/line-1?lock=COMPLIANCE&retain-days=3650")

        for bad in ["s3://Bad_Bucket/x", "s3://keyline-escrow/x?lock=COMPLIANCE", "gs://keyline-escrow/x"] {
            lines[lines.count - 1] = "  store: \(bad)"
            let problems = scratch.problems(lines)
            #expect(problems.contains { $0.keyPath == "escrow.store" && $0.line == lines.count && !$0.advice.isEmpty },
                    "\(bad): \(problems.map(\.description))")
        }
    }
}
