import Age
import LocalFiles

/// The escrow identities and recipients operators name by file (`-i`, `-R`, KEYLINE_RECIPIENTS):
/// the one place they are read and parsed, so the guard against a secret key given as a
/// recipient (never echoed) covers every command. Blocking (file reads): async callers run these
/// with `offPool`.
public enum EscrowKeyFiles {
    /// An identity or recipients file is a few lines.
    public static let fileLimit = 64 * 1024

    /// `what` names the file in a refusal (a folder, a device, a file too large).
    public static func identities(_ paths: [String], what: String = "an age identity or recipients file") throws -> [X25519Identity] {
        guard !paths.isEmpty else { throw AgeError.noIdentities }
        return try parse(paths, what: what) { text throws(AgeError) in try X25519Identity.parseFile(text) }
    }

    /// The recipients given as text (`-r`) and in files (`-R`); at least one.
    public static func recipients(_ texts: [String], files: [String]) throws -> [X25519Recipient] {
        let recipients = try texts.map { try X25519Recipient($0) }
            + parse(files, what: "an age identity or recipients file") { text throws(AgeError) in try X25519Recipient.parseFile(text) }
        guard !recipients.isEmpty else { throw AgeError.noRecipients }
        return recipients
    }

    /// Every file read (bounded) and parsed in turn; a parse failure names its file.
    private static func parse<T>(_ paths: [String], what: String, _ parseFile: (String) throws(AgeError) -> [T]) throws -> [T] {
        var parsed: [T] = []
        for path in paths {
            let bytes = try InputFile.read(path, limit: fileLimit, what: what)
            do {
                parsed += try parseFile(String(decoding: bytes, as: UTF8.self))
            } catch {
                throw FileContentError(path: path, error: error)
            }
        }
        return parsed
    }
}
