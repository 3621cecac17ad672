import Foundation
import ParticlePlatform
import Testing
import TestSupport

@Suite struct SimMakeFirmwareCLI {
    @Test func writesAValidModuleAndNeverOverwrites() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let result = try await KeylineSimBinary.run(["make-firmware", "--platform", "boron", "--function", "user", "--index", "2",
                                                  "-o", "boron-user.bin", "--json"], in: dir.url)
        #expect(result.status == 0, "\(result.stderr)")
        let json = try result.json()
        #expect(json["address"] as? String == "0xb4000")
        let bytes = try dir.read("boron-user.bin")
        let module = try FirmwareModule.parse(bytes)
        #expect(module.platformID == Platform.boron.id && module.function == .userPart && module.index == 2)
        #expect(json["size"] as? Int == bytes.count)

        let again = try await KeylineSimBinary.run(["make-firmware", "--platform", "boron", "--function", "system", "--index", "1",
                                                 "-o", "boron-user.bin"], in: dir.url)
        #expect(again.status == 73)
        #expect(again.stderr.contains("already exists"))
        #expect(try dir.read("boron-user.bin") == bytes)
        let forced = try await KeylineSimBinary.run(["make-firmware", "--platform", "boron", "--function", "system", "--index", "1",
                                                  "--size", "300000", "-o", "boron-user.bin", "--force"], in: dir.url)
        #expect(forced.status == 0, "\(forced.stderr)")
        #expect(try FirmwareModule.parse(try dir.read("boron-user.bin")).length == 300_000)
    }

    @Test func refusesImpossibleModules() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        for arguments in [["--platform", "photon", "--function", "radio-stack", "--index", "0"],
                          ["--platform", "photon", "--function", "toaster", "--index", "1"],
                          ["--platform", "toaster", "--function", "user", "--index", "1"],
                          ["--platform", "photon", "--function", "user", "--index", "1", "--size", "999999"]] {
            let result = try await KeylineSimBinary.run(["make-firmware"] + arguments + ["-o", "x.bin", "--json"], in: dir.url)
            #expect(result.status == 64, "\(arguments): \(result.stdout)")
            #expect(((try result.json())["error"] as? [String: Any])?["kind"] as? String != nil)
            #expect(!FileManager.default.fileExists(atPath: dir.path("x.bin")))
        }
    }
}
