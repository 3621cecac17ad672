import ArgumentParser
import Escrow
import Foundation
import CommandReporting

extension EscrowCommand {
    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Decrypt a key backup and show what it holds (metadata; the key only with --reveal-key).",
            discussion: """
                Checks the backup completely: the age file authenticates, the document is a valid \
                version \(EscrowBackup.version) backup, and the private key's public key has the recorded \
                SHA-256. Prints device ID, platform, product, algorithm, public key SHA-256, job, station \
                and creation time, and the ciphertext SHA-256 the registry records. --reveal-key also \
                prints the private key (PEM; in JSON also base64 DER) — only do this on the RMA bench.

                \(EscrowCommand.exitCodes)
                """)

        @Option(name: [.customShort("i"), .customLong("identity")], help: "Identity file (repeatable).")
        var identities: [String] = []

        @Flag(help: "Also print the private key.")
        var revealKey = false

        @OptionGroup var options: OutputOptions

        @Argument(help: "Backup file (.age).")
        var backup: String

        func run() async throws {
            try await CLI.run(json: options.json) {
                let opened = try BackupFileCheck.open(backup, identityFiles: identities)
                let decoded = opened.backup
                var fields: [String: Any] = decoded.metadata
                fields["file"] = backup
                fields["sha256"] = opened.sha256
                fields["object_key"] = decoded.objectKey.path
                if revealKey {
                    fields["private_key_der"] = Data(decoded.privateKey.der).base64EncodedString()
                    fields["private_key_pem"] = try decoded.privateKey.pem()
                }
                if options.json {
                    CLI.printJSON(fields)
                } else {
                    let order = ["file", "sha256", "object_key", "device_id", "platform", "product", "algorithm",
                                 "public_key_sha256", "job", "station", "created_at", "format", "version"]
                    for name in order { print("\(name + ":")\(String(repeating: " ", count: max(1, 19 - name.count)))\(fields[name].map { "\($0)" } ?? "")") }
                    if revealKey { print(try decoded.privateKey.pem().trimmingCharacters(in: .newlines)) }
                }
            }
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a backup against the SHA-256 the registry recorded, without the identity.",
            discussion: """
                Compares the file's SHA-256 with --sha256 and checks that its age header parses. This is \
                what an audit runs: it detects loss or tampering without decrypting. With -i, the backup \
                is also decrypted and its document and key checked (as `show`, printing no key).

                \(EscrowCommand.exitCodes)
                """)

        @Option(help: "The expected SHA-256 of the file (64 hex digits).")
        var sha256: String

        @Option(name: [.customShort("i"), .customLong("identity")], help: "Also decrypt and check the backup with this identity file (repeatable).")
        var identities: [String] = []

        @OptionGroup var options: OutputOptions

        @Argument(help: "Backup file (.age).")
        var backup: String

        func validate() throws {
            guard sha256.count == 64, sha256.allSatisfy(\.isHexDigit) else {
                throw ValidationError("--sha256 must be 64 hex digits")
            }
        }

        func run() async throws {
            try await CLI.run(json: options.json) {
                let checked = try BackupFileCheck.verify(backup, expectedSHA256: sha256, identityFiles: identities)
                let stanzas = checked.recipientTypes
                var result: [String: Any] = ["file": backup, "sha256": checked.sha256, "match": true,
                                             "recipients": stanzas, "decrypted": checked.backup != nil]
                if let decoded = checked.backup { result.merge(decoded.metadata) { old, _ in old } }
                if options.json {
                    CLI.printJSON(result)
                } else {
                    var line = "\(backup): OK, SHA-256 \(checked.sha256), \(stanzas.count) recipient stanza(s)"
                    if let device = result["device_id"], let fingerprint = result["public_key_sha256"] {
                        line += "; decrypts to a valid backup of device \(device), public key SHA-256 \(fingerprint)"
                    }
                    print(line)
                }
            }
        }
    }
}
