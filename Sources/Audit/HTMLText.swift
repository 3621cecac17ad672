/// Text made safe for HTML and XML: one escaping for the dashboard's pages and `keyline report`'s
/// HTML, so an improvement to one cannot miss the other.
public enum HTMLText {
    /// `text` for an element's content or a quoted attribute value (either quote): `& < > " '`
    /// become entities, and control characters other than newline and tab (from a device or an
    /// error message) are shown as `?`. Everything else, non-ASCII included, is kept as it is.
    ///
    /// Works on Unicode scalars, not Characters: a quote followed by a combining mark is one
    /// Character, and matching Characters would let that quote through unescaped.
    public static func escaped(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default:
                out.unicodeScalars.append(scalar.value < 0x20 && scalar != "\n" && scalar != "\t" ? "?" : scalar)
            }
        }
        return out
    }
}
