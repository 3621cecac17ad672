import Foundation

/// What JSONSerialization does not check: a key given twice in one object, of which it silently
/// keeps the last. A backup document with "platform" twice could show one value to one reader
/// and another to the next, so it is refused (issue 12).
enum StrictJSON {
    /// The first key that appears twice in the same object (after unescaping), or nil. Malformed
    /// JSON gives nil too: the parser that follows reports it.
    static func duplicateKey(in bytes: [UInt8]) -> String? {
        // One entry per open container: the keys seen so far, or nil for an array.
        var containers: [Set<String>?] = []
        var expectingKey = false
        var index = 0
        while index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: "{"):
                containers.append(Set<String>()); expectingKey = true
            case UInt8(ascii: "["):
                containers.append(nil); expectingKey = false
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                if !containers.isEmpty { containers.removeLast() }
                expectingKey = false
            case UInt8(ascii: ","):
                expectingKey = containers.last.map { $0 != nil } ?? false
            case UInt8(ascii: "\""):
                let start = index
                index += 1
                while index < bytes.count, bytes[index] != UInt8(ascii: "\"") {
                    index += bytes[index] == UInt8(ascii: "\\") ? 2 : 1
                }
                guard index < bytes.count else { return nil }
                if expectingKey, let top = containers.indices.last, var keys = containers[top] {
                    guard let key = try? JSONSerialization.jsonObject(with: Data(bytes[start...index]), options: .fragmentsAllowed) as? String else {
                        return nil
                    }
                    if !keys.insert(key).inserted { return key }
                    containers[top] = keys
                    expectingKey = false
                }
            default:
                break
            }
            index += 1
        }
        return nil
    }
}
