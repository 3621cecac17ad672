/// An address or a length as an operator types it for a DFU read or write: "0x08020000", "0X22"
/// or "34".
public enum MemoryNumber {
    /// `what` names the value in the error ("address", "length").
    public static func parse(_ text: String, what: String) throws(MemoryNumberError) -> UInt32 {
        let lower = text.lowercased()
        guard let value = lower.hasPrefix("0x") ? UInt32(lower.dropFirst(2), radix: 16) : UInt32(lower) else {
            throw MemoryNumberError(text: text, what: what)
        }
        return value
    }
}

/// Text that is not a 32-bit number, decimal or hex.
public struct MemoryNumberError: Error, Sendable, Equatable, CustomStringConvertible {
    public var text: String
    public var what: String

    public var description: String { "\(what) \(text) is not a number (decimal or 0x…)" }
}
