import Foundation
import ParticlePlatform
import Testing
import TestSupport

/// `make package`'s Debian package, unpacked into a scratch root and used as a station PC would:
/// the binary with no Swift toolchain, the control fields, the udev rule and the systemd units.
/// Runs under `make test` (which builds the package first) or with KEYLINE_TEST_PACKAGE set.
@Suite("the station package (make package)", .enabled(if: StationPackage.isWanted))
struct StationPackageTests {
    @Test("the packaged keyline runs with no toolchain: --version, --help, db migrate and db status")
    func binaryRunsWithoutToolchain() async throws {
        let package = try await StationPackage.unpack()
        let station = StationPackage.stationEnvironment()
        let toolchain = StationPackage.toolchain()
        #expect(!(station["PATH"] ?? "").contains(toolchain))

        // Every library it loads is a system one: none from the toolchain, none missing, and no
        // run path into the toolchain that would find one there anyway.
        let ldd = try await ChildProcess.run("ldd", [package.binary], environment: station, timeout: .seconds(60)).requireSuccess().stdout
        #expect(!ldd.contains("not found"), "\(ldd)")
        #expect(!ldd.contains(toolchain), "\(ldd)")
        for runtime in ["libswift", "libFoundation", "lib_Foundation", "libdispatch", "libBlocksRuntime"] {
            #expect(!ldd.contains(runtime), "\(runtime) is linked dynamically:\n\(ldd)")
        }
        for system in ["libpq.so.5", "libusb-1.0.so.0", "libcrypto.so.3"] {
            #expect(ldd.contains(system), "\(system) is not linked:\n\(ldd)")
        }
        let dynamic = try await ChildProcess.run("readelf", ["-d", package.binary], timeout: .seconds(60)).requireSuccess().stdout
        let runPaths = dynamic.split(separator: "\n").filter { $0.contains("RPATH") || $0.contains("RUNPATH") }
        #expect(!runPaths.contains { $0.contains(toolchain) }, "\(runPaths)")

        let fields = try await package.fields()
        let version = try await ChildProcess.run(package.binary, ["--version"], environment: station, timeout: .seconds(60))
        #expect(version.status == 0, "\(version.stderr)")
        #expect(version.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == fields["Version"], "\(version.stdout) vs \(fields)")
        #expect(URL(fileURLWithPath: package.deb).lastPathComponent == "keyline_\(fields["Version"] ?? "?")_amd64.deb")

        let help = try await ChildProcess.run(package.binary, ["--help"], environment: station, timeout: .seconds(60))
        #expect(help.status == 0, "\(help.stderr)")
        #expect(help.stdout.contains("provision") && help.stdout.contains("EXIT CODES"), "\(help.stdout)")

        // A real command against the test PostgreSQL, through the system's libpq.
        try await DatabaseCLITests.withFreshDatabase { database in
            let environment = database.merging(station) { $1 }
            let migrate = try await ChildProcess.run(package.binary, ["db", "migrate", "--json"], environment: environment,
                                                     timeout: .seconds(120))
            #expect(migrate.status == 0, "\(migrate.stderr)")
            let status = try await ChildProcess.run(package.binary, ["db", "status", "--json"], environment: environment,
                                                    timeout: .seconds(120))
            #expect(status.status == 0, "\(status.stderr)")
            #expect(try status.json()["upToDate"] as? Bool == true, "\(status.stdout)")
        }
    }

    @Test("control fields, Depends on the system libraries only, root-owned files, conffiles, maintainer scripts")
    func controlAndContents() async throws {
        let package = try await StationPackage.unpack()
        let fields = try await package.fields()
        #expect(fields["Package"] == "keyline")
        #expect(fields["Architecture"] == "amd64")
        #expect(Int(fields["Installed-Size"] ?? "") ?? 0 > 1000, "\(fields)")
        #expect(fields["Maintainer"]?.isEmpty == false && fields["Description"]?.isEmpty == false)
        let depends = (fields["Depends"] ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let names = Set(depends.map { dependency in String(dependency.prefix { $0 != " " && $0 != "(" }) })
        for required in ["libc6", "libpq5", "libssl3", "libusb-1.0-0", "adduser"] {
            #expect(names.contains(required), "Depends lacks \(required): \(depends)")
        }
        #expect(!names.contains { $0.contains("swift") }, "\(depends)")

        let members = try await package.members()
        #expect(members.allSatisfy { $0.owner == "root/root" }, "\(members.filter { $0.owner != "root/root" })")
        let byPath = Dictionary(members.map { ($0.path, $0.mode) }, uniquingKeysWith: { first, _ in first })
        #expect(byPath["./usr/bin/keyline"] == "-rwxr-xr-x")
        #expect(byPath["./usr/lib/udev/rules.d/50-particle.rules"] == "-rw-r--r--")
        #expect(byPath["./usr/lib/systemd/system/keyline-provision@.service"] == "-rw-r--r--")
        #expect(byPath["./usr/lib/systemd/system/keyline-dashboard.service"] == "-rw-r--r--")
        // Credentials: root only.
        #expect(byPath["./etc/keyline/station.env"] == "-rw-------")
        #expect(byPath["./etc/keyline/dashboard.env"] == "-rw-------")
        for doc in ["README", "copyright", "changelog.gz"] {
            #expect(byPath["./usr/share/doc/keyline/\(doc)"] == "-rw-r--r--", "no /usr/share/doc/keyline/\(doc)")
        }

        let conffiles = try String(contentsOf: package.control.appendingPathComponent("conffiles"), encoding: .utf8)
            .split(separator: "\n").map(String.init)
        #expect(conffiles == ["/etc/keyline/station.env", "/etc/keyline/dashboard.env"])
        for file in conffiles { #expect(byPath["." + file] != nil, "conffile \(file) is not in the package") }

        for script in ["postinst", "prerm", "postrm"] {
            let path = package.control.appendingPathComponent(script).path
            #expect(FileManager.default.isExecutableFile(atPath: path), "\(script) is missing or not executable")
            let check = try await ChildProcess.run("/bin/sh", ["-n", path], timeout: .seconds(30))
            #expect(check.status == 0, "\(script): \(check.stderr)")
        }
        let postinst = try String(contentsOf: package.control.appendingPathComponent("postinst"), encoding: .utf8)
        #expect(postinst.contains("adduser --system") && postinst.contains("adduser keyline plugdev"))
    }

    @Test("the udev rule gives the plugdev group every platform's USB IDs, normal and DFU mode, and nothing else")
    func udevRule() async throws {
        let package = try await StationPackage.unpack()
        let rules = try package.lines(of: "usr/lib/udev/rules.d/50-particle.rules").map(Self.matchKeys)
        #expect(!rules.isEmpty)
        for rule in rules {
            #expect(rule["SUBSYSTEMS=="] == "usb" && rule["GROUP="] == "plugdev" && rule["MODE="] == "0660", "\(rule)")
        }
        func matched(_ vendor: UInt16, _ product: UInt16) -> Bool {
            let v = Self.hex(vendor), p = Self.hex(product)
            return rules.contains { rule in
                guard let vendors = rule["ATTRS{idVendor}=="], let products = rule["ATTRS{idProduct}=="] else { return false }
                return fnmatch(vendors, v, 0) == 0 && fnmatch(products, p, 0) == 0
            }
        }
        for platform in Platform.all {
            #expect(matched(platform.vendorID, platform.normalProductID), "\(platform.name) in normal mode is not covered")
            #expect(matched(platform.vendorID, platform.dfuProductID), "\(platform.name) in DFU mode is not covered")
        }
        // Not every USB device: an ST DFU bootloader, another vendor's product with Particle's PID.
        #expect(!matched(0x0483, 0xDF11))
        #expect(!matched(0x1D50, 0xD006))
        #expect(!matched(0x2B04, 0xE006))
    }

    /// Four lowercase hex digits, as udev reads idVendor and idProduct from sysfs.
    static func hex(_ value: UInt16) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }

    /// `KEY=="value"` / `KEY="value"` pairs of one rule line, keyed by the key and its operator.
    static func matchKeys(_ line: String) -> [String: String] {
        var keys: [String: String] = [:]
        for part in line.split(separator: ",") {
            let text = part.trimmingCharacters(in: .whitespaces)
            guard let quote = text.firstIndex(of: "\""), text.hasSuffix("\""),
                  text.index(after: quote) < text.endIndex else { continue }
            let value = text[text.index(after: quote)..<text.index(before: text.endIndex)]
            keys[String(text[..<quote])] = String(value)
        }
        return keys
    }

    @Test("the systemd units run the documented commands, stop at a step boundary on SIGTERM, and pass systemd-analyze verify")
    func systemdUnits() async throws {
        let package = try await StationPackage.unpack()
        let provision = try package.unit("keyline-provision@.service")
        let service = try #require(provision["Service"])
        #expect(service["ExecStart"] == ["/usr/bin/keyline provision --wait --continue /etc/keyline/%i.yaml"])
        #expect(service["EnvironmentFile"] == ["/etc/keyline/station.env"])
        #expect(service["User"] == ["keyline"] && service["SupplementaryGroups"] == ["plugdev"])
        #expect(service["Restart"] == ["on-failure"])
        #expect(service["KillSignal"] == ["SIGTERM"])
        // Long enough for the longest step and the cloud drain (the unit's comment gives the sum, 155 s).
        let stopSeconds = try #require(Int(service["TimeoutStopSec"]?.first ?? ""))
        #expect(stopSeconds >= 155)
        // A stop at a step boundary exits 130 (ProvisionStopTests), and is not a failure.
        #expect(service["SuccessExitStatus"]?.first?.split(separator: " ").contains("130") == true)
        #expect(service["PrivateDevices"] == nil, "the line needs the USB device nodes")

        let dashboard = try #require(try package.unit("keyline-dashboard.service")["Service"])
        #expect(dashboard["ExecStart"] == ["/usr/bin/keyline dashboard --listen 127.0.0.1:8080"])
        #expect(dashboard["EnvironmentFile"] == ["/etc/keyline/dashboard.env"])
        #expect(dashboard["Restart"] == ["on-failure"])

        // systemd's own parser, on the unpacked root (as installed), where the host has systemd.
        guard let analyze = try? ChildProcess.locate("systemd-analyze"), FileManager.default.fileExists(atPath: analyze.path) else {
            return
        }
        let units = package.root.appendingPathComponent("usr/lib/systemd/system")
        // The targets and slices the units' default dependencies name, from the host.
        let hostUnits = URL(fileURLWithPath: "/lib/systemd/system")
        for name in (try? FileManager.default.contentsOfDirectory(atPath: hostUnits.path)) ?? []
        where name.hasSuffix(".target") || name.hasSuffix(".slice") {
            let source = hostUnits.appendingPathComponent(name).resolvingSymlinksInPath()
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: source.path, isDirectory: &isDirectory), !isDirectory.boolValue,
                  !FileManager.default.fileExists(atPath: units.appendingPathComponent(name).path) else { continue }
            try FileManager.default.copyItem(at: source, to: units.appendingPathComponent(name))
        }
        try Data().write(to: package.root.appendingPathComponent("etc/keyline/photon-factory.yaml"))
        let verify = try await ChildProcess.run(analyze.path, ["verify", "--root=\(package.root.path)",
                                                               "keyline-provision@photon-factory.service", "keyline-dashboard.service"],
                                                timeout: .seconds(120))
        #expect(verify.status == 0, "\(verify.stdout)\n\(verify.stderr)")
        // Unknown keys and bad values are only warnings to systemd: none is expected.
        #expect(verify.stderr.isEmpty && verify.stdout.isEmpty, "\(verify.stdout)\n\(verify.stderr)")
    }
}

/// lintian, where a station's developer has it (CI does not install it: it is slow to install and
/// to run). Only the missing manual page is accepted.
@Suite("the station package: lintian", .enabled(if: StationPackage.isWanted && (try? ChildProcess.locate("lintian")) != nil))
struct StationPackageLintianTests {
    @Test("lintian reports no error or warning but the missing manual page")
    func lintianClean() async throws {
        let package = try await StationPackage.unpack()
        let lintian = try await ChildProcess.run("lintian", [package.deb], timeout: .seconds(600))
        let tags = (lintian.stdout + lintian.stderr).split(separator: "\n")
            .filter { $0.hasPrefix("E:") || $0.hasPrefix("W:") }
            .filter { !$0.contains("no-manual-page") }
        #expect(tags.isEmpty, "\(tags.joined(separator: "\n"))")
    }
}
