import Foundation
import Yams

/// The jig's ports (pipeline key `ports:`, issue 23): a device on any other port is never touched —
/// no open beyond what enumeration read, no DFU, no flash — and is shown as "not permitted".
/// Each port may carry a nickname ("slot 1") shown in the terminal, the JSON events and the
/// dashboard. Absent from the pipeline: every port is permitted, as before.
///
/// ```yaml
/// ports:
///   - path: "1-1.2"      # the port path as `keyline devices` prints it
///     name: "slot 1"     # optional
/// ```
/// The contract with the dashboard branch: /work/briefs/ports-contract.md.
public struct PortAllowList: Sendable, Equatable {
    public struct Port: Sendable, Equatable {
        /// A USB port path, libusb's sysfs naming: `1-2.3`.
        public let path: String
        public let name: String?

        public init(path: String, name: String?) {
            self.path = path
            self.name = name
        }
    }

    public let ports: [Port]

    public init(ports: [Port]) {
        self.ports = ports
    }

    public func permits(portPath: String) -> Bool {
        ports.contains { $0.path == portPath }
    }

    /// The port's nickname, nil when it has none or is not in the list.
    public func name(forPortPath portPath: String) -> String? {
        ports.first { $0.path == portPath }?.name
    }

    /// A port for people: `1-1.2 (slot 1)`, or the path alone.
    public func label(forPortPath portPath: String) -> String {
        name(forPortPath: portPath).map { "\(portPath) (\($0))" } ?? portPath
    }
}

extension PipelineReading {
    /// `ports:` — a list of `{path, name}` mappings; a bare scalar item is a path without a name.
    /// Every bad entry is reported (empty, malformed, duplicate path; a name that is empty or not
    /// one printable line) and `valid` cleared; absent (nil, valid) means every port is permitted.
    mutating func readPorts(_ field: PipelineYAML.Field?) -> (list: PortAllowList?, valid: Bool) {
        guard let field else { return (nil, true) }
        guard case .sequence(let sequence) = field.node else {
            yaml.report(field.node, field.path, "expected a list of ports, found \(yaml.kind(of: field.node))",
                        advice: "write one '- path: \"1-1.2\"' item per port of the jig (`keyline devices` prints the paths)")
            return (nil, false)
        }
        var ports: [PortAllowList.Port] = []
        var firstSeen: [String: String] = [:]  // path → key path of its first entry
        var ok = true
        for (index, item) in sequence.enumerated() {
            let itemPath = "\(field.path)[\(index)]"
            var pathField = PipelineYAML.Field(node: item, path: itemPath)
            var nameField: PipelineYAML.Field?
            if case .mapping = item {
                guard let keys = yaml.mapping(item, itemPath, known: ["path", "name"]) else { ok = false; continue }
                guard let path = keys["path"] else {
                    yaml.report(item, "\(itemPath).path", "missing",
                                advice: "give the port path as `keyline devices` prints it, e.g. path: \"1-1.2\"")
                    ok = false
                    continue
                }
                pathField = path
                nameField = keys["name"]
            }
            let advice = "give the port path as `keyline devices` prints it (bus-port[.port…]), e.g. \"1-1.2\""
            guard let path = yaml.requiredString(pathField, pathField.path, parent: item, advice: advice) else {
                ok = false
                continue
            }
            guard PipelineReading.isPortPath(path) else {
                yaml.report(pathField.node, pathField.path, "'\(DeviceQueue.printable(path))' is not a USB port path", advice: advice)
                ok = false
                continue
            }
            if let earlier = firstSeen[path] {
                yaml.report(pathField.node, pathField.path, "port \(path) is listed twice (first at \(earlier))",
                            advice: "list each port once; give it one name")
                ok = false
                continue
            }
            firstSeen[path] = pathField.path
            var name: String?
            if let nameField, let text = yaml.string(nameField) {
                let trimmed = text.trimmingCharacters(in: .whitespaces)
                guard !trimmed.isEmpty, trimmed.count <= 40, trimmed.unicodeScalars.allSatisfy({ $0.value >= 32 && $0.value != 127 }) else {
                    yaml.report(nameField.node, nameField.path, "a port name must be one printable line of 1–40 characters",
                                advice: "write a short nickname, e.g. name: \"slot 1\"; or leave the name out")
                    ok = false
                    continue
                }
                name = trimmed
            }
            ports.append(PortAllowList.Port(path: path, name: name))
        }
        if ok && ports.isEmpty {
            yaml.report(field.node, field.path, "the list is empty: no device could be provisioned",
                        advice: "list the jig's ports, or remove 'ports:' to permit every port")
            ok = false
        }
        return ok ? (PortAllowList(ports: ports), true) : (nil, false)
    }
}

extension PipelineLoader {
    /// Only the `ports:` list of a pipeline file (nil: the file permits every port), for commands
    /// that show the jig without running it (`keyline devices --pipeline`): the rest of the file —
    /// firmware, recipients, the store — is neither read nor required. Problems in `ports:` (or
    /// YAML that does not parse) are reported as `load` reports them.
    public static func loadPorts(path: String, environment: [String: String]) throws(PipelineValidationError) -> PortAllowList? {
        let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
        guard let data = FileManager.default.contents(atPath: absolute), let text = String(data: data, encoding: .utf8) else {
            let missing = !FileManager.default.fileExists(atPath: absolute)
            throw PipelineValidationError(problems: [PipelineProblem(
                file: absolute, line: 0, keyPath: "", message: missing ? "no such file" : "cannot be read as UTF-8 text",
                advice: missing ? "check the path; shipped pipelines are in pipelines/" : "check the file's permissions and encoding")])
        }
        var reading = PipelineReading(file: absolute, environment: environment, overrides: .none)
        var ports: PortAllowList?
        if let root = reading.yaml.compose(text), case .mapping(let mapping) = root {
            let field = mapping.first { $0.key.scalar?.string == "ports" }.map { PipelineYAML.Field(node: $0.value, path: "ports") }
            ports = reading.readPorts(field).list
        }
        guard reading.yaml.problems.isEmpty else { throw PipelineValidationError(problems: reading.yaml.problems) }
        return ports
    }
}
