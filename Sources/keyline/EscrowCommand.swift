import ArgumentParser
import DeviceKeys
import Escrow
import Age
import ParticlePlatform
import Foundation
import CommandReporting
import EscrowS3

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

    /// An escrow backup is one age header (about 100 bytes a recipient) and a document of at most
    /// `EscrowBackup.maximumDocumentSize`; an identity or recipients file is a few lines.
    static let backupFileLimit = 64 * 1024
    static let identityFileLimit = EscrowKeyFiles.fileLimit

    static func loadIdentities(_ paths: [String]) throws -> [X25519Identity] {
        try EscrowKeyFiles.identities(paths)
    }

    static func loadRecipients(_ texts: [String], files: [String]) throws -> [X25519Recipient] {
        try EscrowKeyFiles.recipients(texts, files: files)
    }

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

    struct Backup: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Escrow a device key: write its encrypted backup to a store directory or a file.",
            discussion: """
                Builds the backup document (device ID, platform, product, algorithm, private key DER, \
                public key SHA-256, job, station, time), encrypts it to the recipients and, with --store, \
                writes it durably and write-once to STORE/<product>/<device-id>/<public-key-sha256>.age \
                (a directory: fsync of file and directory; s3://bucket/prefix: a conditional put with \
                If-None-Match and a SHA-256 checksum; an existing object with other contents is never \
                replaced; writing the same backup again succeeds). Prints the object and the ciphertext SHA-256 the \
                registry records. The key is checked against the platform's slot first. Plaintext never \
                touches the disk.

                \(EscrowCommand.exitCodes)
                """)

        @Argument(help: "Device private key: PEM or DER, as `keyline keys new` or `particle keys save` write it.")
        var key: String

        @Option(help: "Device ID (24 hex digits).")
        var deviceID: String

        @Option(help: "Platform (photon, boron, …).")
        var platform: String

        @Option(help: "Product the device belongs to (ID or slug).")
        var product: String

        @Option(help: "Job that provisioned the device.")
        var job: String

        @Option(help: "Station that provisioned the device.")
        var station: String

        @Option(name: [.customShort("r"), .customLong("recipient")], help: "An age1… recipient (repeatable).")
        var recipients: [String] = []

        @Option(name: [.customShort("R"), .customLong("recipients-file")], help: "A file of age1… recipients (repeatable).")
        var recipientFiles: [String] = []

        @Option(help: ArgumentHelp("Escrow store: a directory, or s3://bucket/prefix (objects at <product>/<device-id>/<sha256>.age).",
                                   discussion: "An s3:// store takes its endpoint and region from AWS_ENDPOINT_URL and AWS_REGION (or ?endpoint=…&region=… in the URI), credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE; ?lock=COMPLIANCE&retain-days=N sets Object Lock retention."))
        var store: String?

        @Option(name: .shortAndLong, help: "Write the backup to this file instead of a store (mode 0600).")
        var output: String?

        @OptionGroup var options: OutputOptions

        func validate() throws {
            guard (store == nil) != (output == nil) else { throw ValidationError("give exactly one of --store DIR|s3://bucket/prefix or -o FILE") }
        }

        func run() async throws {
            try await CLI.run(json: options.json) {
                let target = try Platform.named(platform)
                let id = deviceID.lowercased()
                guard target.isValidDeviceID(id) else {
                    throw CommandFailure(kind: "invalidDeviceID",
                                         message: "\(deviceID) is not a \(target.name) device ID (24 hex digits\(target.deviceIDPrefix.map { ", starting \($0)" } ?? ""))",
                                         context: ["deviceID": deviceID], exit: .usage)
                }
                let parsed: KeyFile
                do { parsed = try KeyFile.parse(try CLI.readFile(key, limit: KeyFile.maximumFileSize, what: "a key file")) } catch { throw error.about(file: key) }
                guard let privateKey = parsed.privateKey else { throw DeviceKeyError.notAPrivateKey.about(file: key) }
                do { try target.checkDeviceKey(privateKey) } catch { throw error.about(file: key) }
                let parsedRecipients = try EscrowCommand.loadRecipients(recipients, files: recipientFiles)
                let backup = try EscrowBackup(deviceID: id, platform: target.name, product: product, privateKey: privateKey,
                                              job: job, station: station)
                let sealed = try backup.seal(to: parsedRecipients)
                let digest: String
                let location: String
                if let store {
                    let escrowStore = try EscrowStores.open(store)
                    digest = try await escrowStore.put(sealed.ciphertext, at: sealed.objectKey)
                    location = EscrowStores.describe(sealed.objectKey, in: escrowStore)
                } else {
                    try CLI.writeNewFile(output!, sealed.ciphertext, mode: 0o600, force: false)
                    digest = sealed.sha256
                    location = output!
                }
                if options.json {
                    CLI.printJSON(["file": location, "object_key": sealed.objectKey.path, "sha256": digest,
                                   "public_key_sha256": sealed.publicKeySHA256, "recipients": parsedRecipients.map(\.description)])
                } else {
                    print("escrowed \(backup.algorithm.displayName) key \(backup.publicKeySHA256) of \(id) to \(location)")
                    print("sha256 \(digest)")
                }
            }
        }
    }

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
                let parsed = try EscrowCommand.loadRecipients(recipients, files: recipientFiles)
                let pending = try output.flatMap { $0 == "-" ? nil : try PendingOutputFile(path: $0, force: force) }
                var source = try EscrowFiles.openInput(input)
                defer { EscrowFiles.close(source) }
                var sink = DigestingSink(pending?.sink ?? FileDescriptorSink(descriptor: STDOUT_FILENO, path: "standard output"))
                do {
                    try Age.encrypt(from: &source, to: &sink, recipients: parsed, armor: armor)
                } catch let error as AgeError {
                    throw error.about(file: input ?? "standard input")
                }
                try pending?.commit()
                if options.json, let output {
                    CLI.printJSON(["file": output, "sha256": sink.sha256, "bytes": sink.byteCount,
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
                let loaded = try EscrowCommand.loadIdentities(identities)
                var source = try EscrowFiles.openInput(input)
                defer { EscrowFiles.close(source) }
                var byteCount = 0
                do {
                    if let output, output != "-" {
                        // Streamed into a temporary file that only gets its name once all of it authenticated.
                        let pending = try PendingOutputFile(path: output, force: force)
                        var sink = DigestingSink(pending.sink)
                        try Age.decrypt(from: &source, to: &sink, identities: loaded)
                        try pending.commit()
                        byteCount = sink.byteCount
                    } else {
                        // Standard output gets nothing until the whole file authenticated.
                        var sink = ByteArraySink()
                        try Age.decrypt(from: &source, to: &sink, identities: loaded)
                        FileHandle.standardOutput.write(Data(sink.bytes))
                        byteCount = sink.bytes.count
                    }
                } catch let error as AgeError {
                    throw error.about(file: input ?? "standard input")
                }
                if options.json, let output { CLI.printJSON(["file": output, "bytes": byteCount]) }
            }
        }
    }

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
                let loaded = try EscrowCommand.loadIdentities(identities)
                let file = try CLI.readFile(backup, limit: EscrowCommand.backupFileLimit, what: "an escrow backup")
                let decoded: EscrowBackup
                do { decoded = try EscrowBackup.decrypt(file, identities: loaded) } catch { throw error.about(file: backup) }
                var fields: [String: Any] = decoded.metadata
                fields["file"] = backup
                fields["sha256"] = Age.sha256(file)
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
                let file = try CLI.readFile(backup, limit: EscrowCommand.backupFileLimit, what: "an escrow backup")
                let actual = Age.sha256(file)
                guard actual == sha256.lowercased() else {
                    throw CommandFailure(kind: "checksumMismatch",
                                         message: "\(backup): SHA-256 is \(actual), not the recorded \(sha256.lowercased()): the backup was modified, damaged or replaced",
                                         context: ["file": backup, "expected": sha256.lowercased(), "actual": actual], exit: .dataError)
                }
                let header: AgeHeader
                do { header = try Age.header(of: file) } catch { throw error.about(file: backup) }
                var result: [String: Any] = ["file": backup, "sha256": actual, "match": true,
                                             "recipients": header.stanzas.map(\.type), "decrypted": false]
                if !identities.isEmpty {
                    let loaded = try EscrowCommand.loadIdentities(identities)
                    do {
                        let decoded = try EscrowBackup.decrypt(file, identities: loaded)
                        result["decrypted"] = true
                        result.merge(decoded.metadata) { old, _ in old }
                    } catch { throw error.about(file: backup) }
                }
                if options.json {
                    CLI.printJSON(result)
                } else {
                    var line = "\(backup): OK, SHA-256 \(actual), \(header.stanzas.count) recipient stanza(s)"
                    if let device = result["device_id"], let fingerprint = result["public_key_sha256"] {
                        line += "; decrypts to a valid backup of device \(device), public key SHA-256 \(fingerprint)"
                    }
                    print(line)
                }
            }
        }
    }
}
