import Foundation
import Yams

/// Reads values out of a pipeline's YAML nodes, collecting a problem (with the node's line and
/// column, Yams `Node.mark`) for every value that is missing, of the wrong type or out of range,
/// instead of stopping at the first: the engineer fixes the whole file in one go.
struct PipelineYAML {
    let file: String
    let environment: [String: String]
    private(set) var problems: [PipelineProblem] = []

    init(file: String, environment: [String: String]) {
        self.file = file
        self.environment = environment
    }

    /// A located value: the node it came from and its key path, for later problems.
    struct Field {
        var node: Node
        var path: String
    }

    mutating func report(_ node: Node?, _ path: String, _ message: String, advice: String) {
        let mark = node?.mark
        problems.append(PipelineProblem(file: file, line: mark?.line ?? 0, column: mark?.column, keyPath: path,
                                        message: message, advice: advice))
    }

    /// Parses the file into its root node; YAML syntax errors carry their own mark.
    mutating func compose(_ text: String) -> Node? {
        do {
            guard let root = try Yams.compose(yaml: text) else {
                report(nil, "", "the file is empty", advice: "start from pipelines/photon-factory.yaml")
                return nil
            }
            return root
        } catch let error as YamlError {
            var line = 0, column: Int?
            var detail = "\(error)"
            switch error {
            case let .scanner(_, problem, mark, _), let .parser(_, problem, mark, _), let .composer(_, problem, mark, _):
                line = mark.line
                column = mark.column
                detail = problem
            case let .duplicatedKeysInMapping(duplicates, context):
                line = context.mark.line
                column = context.mark.column
                detail = "duplicate key \(duplicates.joined(separator: ", "))"
            default:
                break
            }
            problems.append(PipelineProblem(file: file, line: line, column: column, keyPath: "",
                                            message: "not valid YAML: \(detail)", advice: "fix the YAML syntax at this line"))
            return nil
        } catch {
            report(nil, "", "not valid YAML: \(error)", advice: "fix the YAML syntax")
            return nil
        }
    }

    /// The mapping's entries by key; unknown keys are reported with the closest known key.
    mutating func mapping(_ node: Node, _ path: String, known: [String]) -> [String: Field]? {
        guard case .mapping(let mapping) = node else {
            report(node, path, "expected a mapping (key: value lines), found \(kind(of: node))",
                   advice: "write the keys \(known.joined(separator: ", ")) under \(path.isEmpty ? "the top level" : path)")
            return nil
        }
        var fields: [String: Field] = [:]
        for (keyNode, value) in mapping {
            guard let key = keyNode.scalar?.string else {
                report(keyNode, path, "a key must be a plain word", advice: "use one of \(known.joined(separator: ", "))")
                continue
            }
            let childPath = path.isEmpty ? key : "\(path).\(key)"
            guard known.contains(key) else {
                let advice = Self.closest(to: key, in: known).map { "did you mean '\($0)'?" }
                    ?? "known keys here: \(known.joined(separator: ", "))"
                report(keyNode, childPath, "unknown key '\(key)'", advice: advice)
                continue
            }
            fields[key] = Field(node: value, path: childPath)
        }
        return fields
    }

    /// A scalar with `${NAME}` / `${NAME:-default}` substituted; nil (reported) when it is not a
    /// scalar or names an unset variable. YAML null (`~`, empty) counts as absent: nil, unreported.
    mutating func string(_ field: Field) -> String? {
        guard case .scalar(let scalar) = field.node else {
            report(field.node, field.path, "expected a single value, found \(kind(of: field.node))", advice: "write one value after the colon")
            return nil
        }
        if scalar.style == .plain, ["", "~", "null", "Null", "NULL"].contains(scalar.string) { return nil }
        return substitute(scalar.string, field)
    }

    /// A required scalar: absent is reported too.
    mutating func requiredString(_ field: Field?, _ path: String, parent: Node?, advice: String) -> String? {
        guard let field else {
            report(parent, path, "missing", advice: advice)
            return nil
        }
        let before = problems.count
        guard let value = string(field), !value.isEmpty else {
            if problems.count == before { report(field.node, field.path, "has no value", advice: advice) }
            return nil
        }
        return value
    }

    /// An integer (decimal, or hex with 0x) within `range`.
    mutating func integer(_ field: Field, in range: ClosedRange<Int>, advice: String) -> Int? {
        guard let text = string(field) else { return nil }
        let value = Self.parseInteger(text)
        guard let value, range.contains(value) else {
            report(field.node, field.path,
                   value == nil ? "'\(text)' is not a whole number" : "\(text) is out of range \(range.lowerBound)…\(range.upperBound)",
                   advice: advice)
            return nil
        }
        return value
    }

    /// `500ms`, `2s`, `1m`, or a bare number of seconds.
    mutating func duration(_ field: Field, maximum: Duration) -> Duration? {
        guard let text = string(field) else { return nil }
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
        var number = text.trimmingCharacters(in: .whitespaces)
        var scale = 1.0
        for (suffix, factor) in units where number.hasSuffix(suffix) {
            number.removeLast(suffix.count)
            scale = factor
            break
        }
        guard let value = Double(number.trimmingCharacters(in: .whitespaces)), value.isFinite, value >= 0 else {
            report(field.node, field.path, "'\(text)' is not a duration", advice: "write e.g. 500ms, 2s or 1m")
            return nil
        }
        let seconds = value * scale
        guard seconds <= Double(maximum.components.seconds) else {
            report(field.node, field.path, "\(text) is longer than \(maximum)", advice: "use at most \(maximum.components.seconds)s")
            return nil
        }
        return .milliseconds(Int64((seconds * 1000).rounded()))
    }

    /// A list of scalars (a single scalar is a list of one).
    mutating func stringList(_ field: Field) -> [(value: String, node: Node)]? {
        switch field.node {
        case .sequence(let sequence):
            var values: [(String, Node)] = []
            for (i, item) in sequence.enumerated() {
                if let value = string(Field(node: item, path: "\(field.path)[\(i)]")) { values.append((value, item)) }
            }
            return values
        case .scalar:
            return string(field).map { [($0, field.node)] }
        default:
            report(field.node, field.path, "expected a list, found \(kind(of: field.node))", advice: "write one '- item' line per entry")
            return nil
        }
    }

    /// Replaces `${NAME}` and `${NAME:-default}` from the environment (shell rules: the default
    /// applies when NAME is unset or empty). `$id` without braces is left alone (server hosts use it).
    mutating func substitute(_ text: String, _ field: Field) -> String? {
        var out = ""
        var rest = Substring(text)
        var ok = true
        while let open = rest.range(of: "${") {
            out += rest[..<open.lowerBound]
            guard let close = rest[open.upperBound...].firstIndex(of: "}") else {
                report(field.node, field.path, "'${' without a closing '}'", advice: "write ${NAME} or ${NAME:-default}")
                return nil
            }
            let body = rest[open.upperBound..<close]
            let name: Substring, fallback: Substring?
            if let sep = body.range(of: ":-") {
                name = body[..<sep.lowerBound]
                fallback = body[sep.upperBound...]
            } else {
                name = body
                fallback = nil
            }
            let valid = !name.isEmpty && name.allSatisfy { $0 == "_" || ($0.isASCII && ($0.isLetter || $0.isNumber)) }
            if !valid {
                report(field.node, field.path, "'${\(body)}' is not a variable reference", advice: "names are letters, digits and _")
                ok = false
            } else if let value = environment[String(name)], !(value.isEmpty && fallback != nil) {
                out += value
            } else if let fallback {
                out += fallback
            } else {
                report(field.node, field.path, "environment variable \(name) is not set",
                       advice: "export \(name)=… on this station, give a default as ${\(name):-value}, or pass the value on the command line")
                ok = false
            }
            rest = rest[rest.index(after: close)...]
        }
        out += rest
        return ok ? out : nil
    }

    func kind(of node: Node) -> String {
        switch node {
        case .scalar(let s): "the value '\(s.string)'"
        case .mapping: "a mapping"
        case .sequence: "a list"
        case .alias: "an alias"
        }
    }

    static func parseInteger(_ text: String) -> Int? {
        let t = text.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "_", with: "")
        if t.lowercased().hasPrefix("0x") { return Int(t.dropFirst(2), radix: 16) }
        return Int(t)
    }

    /// The known key nearest to a misspelt one (edit distance at most a third of its length, min 2).
    static func closest(to key: String, in known: [String]) -> String? {
        let scored = known.map { ($0, distance(key.lowercased(), $0)) }.min { $0.1 < $1.1 }
        guard let (best, score) = scored, score <= max(2, key.count / 3) else { return nil }
        return best
    }

    static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        guard !a.isEmpty else { return b.count }
        guard !b.isEmpty else { return a.count }
        var previous = Array(0...b.count)
        for i in 1...a.count {
            var current = [i] + [Int](repeating: 0, count: b.count)
            for j in 1...b.count {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
    }
}
