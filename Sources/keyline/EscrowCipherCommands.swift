import ArgumentParser
import Age
import Escrow
import Foundation
import CommandReporting

extension EscrowCommand {
    struct Encrypt: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Encrypt a file to one or more age recipients.",
            discussion: """
                Any one of the recipients' identities can decrypt the result. Reads IN (default: standard \
                input) and writes OUT (default: standard output; binary output to a terminal is refused, \
                use -a). Recipients files (-R) hold one age1… per line; # comments and blank lines are \
                ignored. With --json, -o is required and a summary with the ciphertext SHA-256 is printed.

                \(EscrowCommand.exitCodes)
                """)

        @Option(name: [.customShort("r"), .customLong("recipient")], help: "An age1… recipient (repeatable).")
        var recipients: [String] = []

        @Option(name: [.customShort("R"), .customLong("recipients-file")], help: "A file of age1… recipients (repeatable).")
        var recipientFiles: [String] = []

        @Flag(name: [.customShort("a"), .long], help: "Write ASCII armor (PEM-like text) instead of binary.")
        var armor = false

        @Option(name: .shortAndLong, help: "Output file (created with mode 0600; default: standard output).")
        var output: String?

        @Flag(help: "Replace an existing output file.")
        var force = false

        @OptionGroup var options: OutputOptions

        @Argument(help: "Input file (default: standard input).")
        var input: String?

        func run() async throws {
            try await CLI.run(json: options.json) {
                if options.json && output == nil { throw EscrowCommand.usage("--json needs -o FILE: standard output carries the ciphertext") }
                if !armor && output == nil && isatty(STDOUT_FILENO) == 1 {
                    throw EscrowCommand.usage("refusing to write binary ciphertext to a terminal; use -o FILE or -a")
                }
                let parsed = try EscrowKeyFiles.recipients(recipients, files: recipientFiles)
                let pending = try output.flatMap { $0 == "-" ? nil : try PendingOutputFile(path: $0, force: force) }
                var source = try EscrowFiles.openInput(input)
                defer { EscrowFiles.close(source) }
                let written = try AgeFileStreams.encrypt(
                    from: &source, named: input ?? "standard input",
                    to: pending?.sink ?? FileDescriptorSink(descriptor: STDOUT_FILENO, path: "standard output"),
                    recipients: parsed, armor: armor)
                try pending?.commit()
                if options.json, let output {
                    CLI.printJSON(["file": output, "sha256": written.sha256, "bytes": written.byteCount,
                                   "armored": armor, "recipients": parsed.map(\.description)])
                }
            }
        }
    }

    struct Decrypt: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Decrypt an age file (binary or armored) with identity files.",
            discussion: """
                Nothing is written unless the whole file authenticates: a modified, damaged or truncated \
                file produces an error and no output. Reads IN (default: standard input) and writes OUT \
                (default: standard output; a file is created with mode 0600 since it may hold a key). \
                A decrypted backup holds a device's private key, so writing to a terminal is refused \
                unless --reveal-key is given (as for `show`); use -o FILE, a pipe, or --reveal-key on the \
                RMA bench.

                \(EscrowCommand.exitCodes)
                """)

        @Option(name: [.customShort("i"), .customLong("identity")], help: "Identity file, as age-keygen writes it (repeatable).")
        var identities: [String] = []

        @Option(name: .shortAndLong, help: "Output file (mode 0600; default: standard output).")
        var output: String?

        @Flag(help: "Replace an existing output file.")
        var force = false

        @Flag(help: "Allow writing the plaintext (a backup's private key) to a terminal.")
        var revealKey = false

        @OptionGroup var options: OutputOptions

        @Argument(help: "Input file (default: standard input).")
        var input: String?

        func run() async throws {
            try await CLI.run(json: options.json) {
                if options.json && output == nil { throw EscrowCommand.usage("--json needs -o FILE: standard output carries the plaintext") }
                if (output == nil || output == "-") && !revealKey && isatty(STDOUT_FILENO) == 1 {
                    throw EscrowCommand.usage("refusing to print the plaintext (a backup holds a private key) to a terminal; use -o FILE, or --reveal-key on the RMA bench")
                }
                let loaded = try EscrowKeyFiles.identities(identities)
                var source = try EscrowFiles.openInput(input)
                defer { EscrowFiles.close(source) }
                let inputName = input ?? "standard input"
                let byteCount: Int
                if let output, output != "-" {
                    // A temporary file that only gets its name once all of it authenticated.
                    let pending = try PendingOutputFile(path: output, force: force)
                    byteCount = try AgeFileStreams.decrypt(from: &source, named: inputName, to: pending.sink, identities: loaded).byteCount
                    try pending.commit()
                } else {
                    let plaintext = try AgeFileStreams.decryptWhole(from: &source, named: inputName, identities: loaded)
                    FileHandle.standardOutput.write(Data(plaintext))
                    byteCount = plaintext.count
                }
                if options.json, let output { CLI.printJSON(["file": output, "bytes": byteCount]) }
            }
        }
    }
}
