import Registry
import ParticlePlatform
import Foundation
import Yams

/// Reads a pipeline file into a `PipelineDefinition`, or reports every problem in it at once.
///
/// ```yaml
/// name: photon-factory
/// product: { id: 12345, name: Acme Sensor }
/// platform: photon
/// firmware:
///   - file: ${KEYLINE_FIRMWARE:-firmware}/photon-user.bin   # address from the module header
/// server: { key: particle, host: device.spark.io, port: 5683 }
/// key_mode: host
/// escrow: { recipients: ${KEYLINE_RECIPIENTS}, store: ${KEYLINE_ESCROW_STORE} }
/// concurrency: 16
/// retries: { attempts: 3, initial_backoff: 1s, max_backoff: 30s }
/// devices: { serials: [...], ports: [...] }
/// ports: [{ path: "1-1.2", name: "slot 1" }]   # the jig's ports (PortAllowList.swift)
/// ```
public enum PipelineLoader {
    static let topLevelKeys = ["name", "product", "platform", "firmware", "server", "key_mode", "escrow",
                               "concurrency", "retries", "devices", "station", "database", "cloud", "ports"]
    public static let concurrencyRange = 1...128
    public static let attemptsRange = 1...20
    static let maximumBackoff: Duration = .seconds(3600)

    /// `${NAME}` / `${NAME:-default}` are substituted in every scalar from `environment`; relative
    /// paths in the file are relative to the file's folder; `overrides` (command line) win over
    /// the file and their relative paths are relative to the current directory.
    public static func load(path: String, environment: [String: String], overrides: PipelineOverrides) throws(PipelineValidationError) -> PipelineDefinition {
        let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
        let text: String
        do {
            let data = try Data(contentsOf: URL(fileURLWithPath: absolute))
            guard let decoded = String(data: data, encoding: .utf8) else {
                throw PipelineValidationError(problems: [PipelineProblem(
                    file: absolute, line: 0, keyPath: "", message: "the file is not UTF-8 text", advice: "save it as UTF-8")])
            }
            text = decoded
        } catch let error as PipelineValidationError {
            throw error
        } catch {
            let missing = !FileManager.default.fileExists(atPath: absolute)
            throw PipelineValidationError(problems: [PipelineProblem(
                file: absolute, line: 0, keyPath: "", message: missing ? "no such file" : "cannot be read (\(error.localizedDescription))",
                advice: missing ? "check the path; shipped pipelines are in pipelines/" : "check the file's permissions")])
        }
        var reading = PipelineReading(file: absolute, environment: environment, overrides: overrides)
        if let definition = reading.read(text), reading.yaml.problems.isEmpty {
            return definition
        }
        // In file order, as an editor lists them (stable: problems of one line keep their order).
        let ordered = reading.yaml.problems.enumerated().sorted { ($0.element.line, $0.offset) < ($1.element.line, $1.offset) }
        throw PipelineValidationError(problems: ordered.map(\.element))
    }
}

/// One load: the YAML reader with its problems, the file's folder, and the overrides.
struct PipelineReading {
    var yaml: PipelineYAML
    let folder: URL
    let overrides: PipelineOverrides

    init(file: String, environment: [String: String], overrides: PipelineOverrides) {
        yaml = PipelineYAML(file: file, environment: environment)
        folder = URL(fileURLWithPath: file).deletingLastPathComponent()
        self.overrides = overrides
    }

    /// Reads every section, each independently so one bad section does not hide another's problems.
    mutating func read(_ text: String) -> PipelineDefinition? {
        guard let root = yaml.compose(text),
              let top = yaml.mapping(root, "", known: PipelineLoader.topLevelKeys) else { return nil }

        let name = top["name"].flatMap { yaml.string($0) }
            ?? URL(fileURLWithPath: yaml.file).deletingPathExtension().lastPathComponent
        let product = readProduct(top["product"], root)
        let platform = readPlatform(top["platform"], root)
        let images = readImages(top["firmware"], platform: platform)
        let serverKey = readServer(top["server"], platform: platform)
        let keyMode = readKeyMode(top["key_mode"])
        let escrow = readEscrow(top["escrow"], root)
        let concurrency = readConcurrency(top["concurrency"])
        let retries = readRetries(top["retries"])
        let selection = readSelection(top["devices"], platform: platform)
        let station = overrides.station ?? top["station"].flatMap { yaml.string($0) } ?? StationName.hostName()
        let database = overrides.database ?? top["database"].flatMap { yaml.string($0) }
        let cloud = readCloud(top["cloud"])
        let ports = readPorts(top["ports"])

        guard let product, let platform, let images, let serverKey, let keyMode, let escrow, let concurrency,
              let retries, let selection, let cloud, ports.valid else { return nil }
        var definition = PipelineDefinition(
            name: name, sourcePath: yaml.file, product: product, platform: platform, images: images, serverKey: serverKey,
            keyMode: keyMode, escrow: escrow, concurrency: concurrency, retries: retries, selection: selection,
            station: station, database: database)
        definition.cloud = cloud
        definition.ports = ports.list
        return definition
    }

    /// A path from the file, made absolute against the pipeline's folder.
    func resolve(_ path: String) -> String {
        URL(fileURLWithPath: path, relativeTo: folder).standardizedFileURL.path
    }

    /// A path from the command line, made absolute against the current directory.
    func resolveOverride(_ path: String) -> String {
        URL(fileURLWithPath: path).standardizedFileURL.path
    }

    mutating func readProduct(_ field: PipelineYAML.Field?, _ root: Node) -> (id: String, name: String)? {
        guard let field else {
            yaml.report(root, "product", "missing", advice: "add 'product:' with 'id:' (the Particle product ID) and 'name:'")
            return nil
        }
        guard let keys = yaml.mapping(field.node, field.path, known: ["id", "name"]) else { return nil }
        let id = yaml.requiredString(keys["id"], "product.id", parent: field.node, advice: "give the Particle product ID, e.g. id: 12345")
        let name = yaml.requiredString(keys["name"], "product.name", parent: field.node, advice: "give the product's name")
        guard let id, let name else { return nil }
        return (id, name)
    }

    mutating func readPlatform(_ field: PipelineYAML.Field?, _ root: Node) -> Platform? {
        guard let text = yaml.requiredString(field, "platform", parent: root,
                                             advice: "name the platform, e.g. platform: photon or platform: boron") else { return nil }
        do {
            return try Platform.named(text)
        } catch {
            let names = Platform.all.map(\.name)
            let advice = PipelineYAML.closest(to: text, in: names).map { "did you mean '\($0)'?" }
                ?? "known platforms: \(names.joined(separator: ", "))"
            yaml.report(field?.node, "platform", "unknown platform '\(text)'", advice: advice)
            return nil
        }
    }

    mutating func readKeyMode(_ field: PipelineYAML.Field?) -> KeyMode? {
        guard let field else { return .host }
        guard let text = yaml.string(field) else { return .host }
        guard let mode = KeyMode(rawValue: text) else {
            yaml.report(field.node, field.path, "unknown key mode '\(text)'",
                        advice: "use host (keyline generates and writes the key) or device (use the key the device generated)")
            return nil
        }
        return mode
    }

    mutating func readConcurrency(_ field: PipelineYAML.Field?) -> Int? {
        let range = PipelineLoader.concurrencyRange
        if let value = overrides.concurrency {
            guard range.contains(value) else {
                yaml.report(nil, "concurrency", "the command line asks for \(value) devices at once",
                            advice: "give \(range.lowerBound)…\(range.upperBound)")
                return nil
            }
            return value
        }
        guard let field else { return 16 }
        return yaml.integer(field, in: range, advice: "devices flashed at once: \(range.lowerBound)…\(range.upperBound), e.g. 16")
    }

    mutating func readRetries(_ field: PipelineYAML.Field?) -> RetryPolicy? {
        guard let field else { return .default }
        guard let keys = yaml.mapping(field.node, field.path, known: ["attempts", "initial_backoff", "max_backoff"]) else { return nil }
        var policy = RetryPolicy.default
        var ok = true
        let range = PipelineLoader.attemptsRange
        if let f = keys["attempts"] {
            if let n = yaml.integer(f, in: range, advice: "attempts per step including the first: \(range.lowerBound)…\(range.upperBound)") {
                policy.attempts = n
            } else { ok = false }
        }
        if let f = keys["initial_backoff"] {
            if let d = yaml.duration(f, maximum: PipelineLoader.maximumBackoff) { policy.initialBackoff = d } else { ok = false }
        }
        if let f = keys["max_backoff"] {
            if let d = yaml.duration(f, maximum: PipelineLoader.maximumBackoff) { policy.maxBackoff = d } else { ok = false }
        }
        if ok, policy.initialBackoff > policy.maxBackoff {
            yaml.report((keys["initial_backoff"] ?? field).node, "\(field.path).initial_backoff",
                        "initial_backoff (\(policy.initialBackoff)) is longer than max_backoff (\(policy.maxBackoff))",
                        advice: "make initial_backoff at most max_backoff")
            ok = false
        }
        return ok ? policy : nil
    }

    mutating func readSelection(_ field: PipelineYAML.Field?, platform: Platform?) -> DeviceSelection? {
        guard let field else { return .all }
        if case .scalar = field.node, let text = yaml.string(field), text == "all" { return .all }
        guard let keys = yaml.mapping(field.node, field.path, known: ["serials", "ports"]) else { return nil }
        var selection = DeviceSelection()
        var ok = true
        if let f = keys["serials"], let items = yaml.stringList(f) {
            for (value, node) in items where !(platform?.isValidDeviceID(value) ?? (value.utf8.count == 24)) {
                yaml.report(node, f.path, "'\(value)' is not a \(platform?.displayName ?? "Particle") device ID",
                            advice: "device IDs are 24 lowercase hex digits (the USB serial number; `keyline devices` lists them)")
                ok = false
            }
            selection.serials = items.map(\.value)
        }
        if let f = keys["ports"], let items = yaml.stringList(f) {
            for (value, node) in items where !Self.isPortPath(value) {
                yaml.report(node, f.path, "'\(value)' is not a USB port path", advice: "write bus-port[.port…], e.g. 1-2.3, as `keyline devices` shows")
                ok = false
            }
            selection.ports = items.map(\.value)
        }
        return ok ? selection : nil
    }

    /// `1-2.3`: a bus number, a dash, dot-separated port numbers (libusb's sysfs naming).
    static func isPortPath(_ text: String) -> Bool {
        let halves = text.split(separator: "-", omittingEmptySubsequences: false)
        guard halves.count == 2, UInt8(halves[0]) != nil else { return false }
        let ports = halves[1].split(separator: ".", omittingEmptySubsequences: false)
        return !ports.isEmpty && ports.allSatisfy { UInt8($0) != nil }
    }
}
