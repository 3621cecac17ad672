import Age
import LocalFiles

/// The escrow identities and recipients operators name by file (`-i`, `-R`, KEYLINE_RECIPIENTS):
/// the one place they are read and parsed, so the guard against a secret key given as a
/// recipient (never echoed) covers every command.
public enum EscrowKeyFiles {
    /// An identity or recipients file is a few lines.
    public static let fileLimit = 64 * 1024

    /// `what` names the file in a refusal (a folder, a device, a file too large).
    public static func identities(_ paths: [String], what: String = "an age identity or recipients file") throws -> [X25519Identity] {
        guard !paths.isEmpty else { throw AgeError.noIdentities }
        var identities: [X25519Identity] = []
        for path in paths {
            let bytes = try InputFile.read(path, limit: fileLimit, what: what)
            do {
                identities += try X25519Identity.parseFile(String(decoding: bytes, as: UTF8.self))
            } catch {
                throw EscrowKeyFileError(path: path, error: error)
            }
        }
        return identities
    }

    /// The recipients given as text (`-r`) and in files (`-R`); at least one.
    public static func recipients(_ texts: [String], files: [String]) throws -> [X25519Recipient] {
        var recipients = try texts.map { try X25519Recipient($0) }
        for path in files {
            let bytes = try InputFile.read(path, limit: fileLimit, what: "an age identity or recipients file")
            do {
                recipients += try X25519Recipient.parseFile(String(decoding: bytes, as: UTF8.self))
            } catch {
                throw EscrowKeyFileError(path: path, error: error)
            }
        }
        guard !recipients.isEmpty else { throw AgeError.noRecipients }
        return recipients
    }
}

/// A file that holds no usable identity or recipient: the file, and why (never its contents).
public struct EscrowKeyFileError: Error, Sendable, CustomStringConvertible {
    public var path: String
    public var error: AgeError

    public init(path: String, error: AgeError) {
        self.path = path
        self.error = error
    }

    public var description: String { "\(path): \(error)" }
}
