import ArgumentParser
import Age
import Foundation
import CommandReporting

/// `keyline escrow …`: age v1 files and key backups, interoperable with `age` and `age-keygen`.
struct EscrowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "escrow",
        abstract: "Make escrow identities, and encrypt, decrypt, inspect and verify key backups (age v1).",
        discussion: """
            Backups are age v1 files (https://age-encryption.org/v1) encrypted to X25519 recipients \
            (age1…). Stations hold recipients only; the identity (AGE-SECRET-KEY-1…) stays with the RMA \
            bench or the escrow officer. The standard tools interoperate both ways: `age -d -i \
            identity.txt backup.age` decrypts any backup, and `age-keygen` identities work here.

            \(EscrowCommand.exitCodes)
            """,
        subcommands: [Keygen.self, Backup.self, Encrypt.self, Decrypt.self, Show.self, Verify.self]
    )

    static let exitCodes = """
        EXIT CODES (escrow)
          0   success
          64  usage error: bad option, invalid age1… recipient, an identity (secret key) given as a \
        recipient, no recipient or identity given, plaintext refused on a terminal
          65  bad data: not an age file, malformed armor or header, header MAC or payload \
        authentication failed (modified or damaged), truncated, invalid backup document, SHA-256 \
        mismatch (verify)
          66  input file missing or unreadable
          73  output exists (never overwritten without --force) or cannot be created, or it is
              inside an escrow store (a store's files are never written or replaced, even with --force)
          74  I/O error while streaming a file
          77  no identity matches: the file was encrypted to other recipients
          79  unsafe escrow store: a symlink or a group/world-writable folder in the store (backup)
        With --json, results and errors are JSON objects on standard output; errors carry "kind" \
        (e.g. truncated, headerMACMismatch, noIdentityMatched) and the failure class.
        """

    static func usage(_ message: String) -> CommandFailure {
        CommandFailure(kind: "usage", message: message, exit: .usage)
    }
}

extension EscrowCommand {
    struct Keygen: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Generate an X25519 identity file (as age-keygen) and print its recipient.",
            discussion: """
                Writes the identity in age-keygen's format (comment lines with the creation time and the \
                public key, then AGE-SECRET-KEY-1…) to a new file with mode 0600, and prints the age1… \
                recipient for the stations' configuration. Keep the identity off the factory floor.

                \(EscrowCommand.exitCodes)
                """)

        @Option(name: .shortAndLong, help: "Identity file to create (mode 0600).")
        var output: String

        @Flag(help: "Replace an existing identity file. The old identity is lost: backups encrypted to it become unreadable.")
        var force = false

        @OptionGroup var options: OutputOptions

        func run() async throws {
            try await CLI.run(json: options.json) {
                let identity = X25519Identity.generate()
                try CLI.writeNewFile(output, Array(identity.identityFile().utf8), mode: 0o600, force: force)
                if options.json {
                    CLI.printJSON(["file": output, "recipient": identity.recipient.description])
                } else {
                    FileHandle.standardError.write(Data("Public key (recipient) of \(output):\n".utf8))
                    print(identity.recipient.description)
                }
            }
        }
    }
}
