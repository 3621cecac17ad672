import Foundation
import TestSupport

/// The station's Debian package as `make package` built it (KEYLINE_TEST_PACKAGE names it),
/// unpacked with `dpkg-deb -x` into a scratch root: what a station PC without a Swift toolchain
/// gets. `make test` sets KEYLINE_TEST_REQUIRE_PACKAGE=1, so there a missing package fails the
/// tests instead of skipping them.
struct StationPackage {
    static let packageVariable = "KEYLINE_TEST_PACKAGE"
    static let requireVariable = "KEYLINE_TEST_REQUIRE_PACKAGE"

    private static var environment: [String: String] { ProcessInfo.processInfo.environment }

    /// Under `make test` (which requires the package), or when a package is named.
    static var isWanted: Bool { !(environment[packageVariable] ?? "").isEmpty || environment[requireVariable] == "1" }

    let deb: String
    let scratch: ScratchDirectory
    var root: URL { scratch.url.appendingPathComponent("root") }
    /// The control archive (`dpkg-deb -e`): control, conffiles, maintainer scripts.
    var control: URL { scratch.url.appendingPathComponent("DEBIAN") }
    var binary: String { root.appendingPathComponent("usr/bin/keyline").path }

    static func unpack() async throws -> StationPackage {
        guard let deb = environment[packageVariable], !deb.isEmpty else {
            throw CLITestFailure("\(requireVariable)=1 but \(packageVariable) names no package: `make test` builds it "
                                 + "(`make package`) and passes its path")
        }
        guard FileManager.default.fileExists(atPath: deb) else {
            throw CLITestFailure("\(packageVariable)=\(deb): no such file (run `make package`)")
        }
        let package = StationPackage(deb: deb, scratch: try ScratchDirectory(label: "deb"))
        try await ChildProcess.run("dpkg-deb", ["-x", deb, package.root.path], timeout: .seconds(300)).requireSuccess()
        try await ChildProcess.run("dpkg-deb", ["-e", deb, package.control.path], timeout: .seconds(120)).requireSuccess()
        return package
    }

    /// The control file's fields (`dpkg-deb -f`), continuation lines joined.
    func fields() async throws -> [String: String] {
        let text = try await ChildProcess.run("dpkg-deb", ["-f", deb], timeout: .seconds(120)).requireSuccess().stdout
        var fields: [String: String] = [:]
        var last: String?
        for line in text.split(separator: "\n") {
            if line.hasPrefix(" "), let name = last {
                fields[name, default: ""] += "\n" + String(line.dropFirst())
            } else if let colon = line.firstIndex(of: ":") {
                let name = String(line[..<colon])
                fields[name] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                last = name
            }
        }
        return fields
    }

    /// `dpkg-deb -c`: each member's mode, owner/group and path (./usr/bin/keyline).
    func members() async throws -> [(mode: String, owner: String, path: String)] {
        let text = try await ChildProcess.run("dpkg-deb", ["-c", deb], timeout: .seconds(120)).requireSuccess().stdout
        return text.split(separator: "\n").compactMap { line in
            let columns = line.split(separator: " ", omittingEmptySubsequences: true)
            guard columns.count >= 6 else { return nil }
            return (mode: String(columns[0]), owner: String(columns[1]), path: String(columns[5]))
        }
    }

    /// The Swift toolchain's folder (/opt/swift): what the packaged binary must not need.
    static func toolchain() -> String {
        guard let swift = try? ChildProcess.locate("swift") else { return "/opt/swift" }
        // …/usr/bin/swift → …
        return swift.resolvingSymlinksInPath().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
    }

    /// A station PC's environment for the packaged binary: nothing of the toolchain on PATH, no
    /// library path. Added to (and overriding) the test process's own.
    static func stationEnvironment() -> [String: String] {
        ["PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LD_LIBRARY_PATH": ""]
    }

    /// A unit or rules file as lines, comments and blank lines dropped.
    func lines(of path: String) throws -> [String] {
        try String(contentsOf: root.appendingPathComponent(path), encoding: .utf8)
            .split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }
    }

    /// A unit file's settings by section ("Service") and key; a key given twice keeps both values.
    func unit(_ name: String) throws -> [String: [String: [String]]] {
        var sections: [String: [String: [String]]] = [:]
        var section = ""
        for line in try lines(of: "usr/lib/systemd/system/\(name)") {
            if line.hasPrefix("[") && line.hasSuffix("]") {
                section = String(line.dropFirst().dropLast())
            } else if let equals = line.firstIndex(of: "=") {
                sections[section, default: [:]][String(line[..<equals]), default: []].append(String(line[line.index(after: equals)...]))
            }
        }
        return sections
    }
}
