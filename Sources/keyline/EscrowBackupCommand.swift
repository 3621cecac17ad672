import ArgumentParser
import Escrow
import EscrowS3
import CommandReporting

extension EscrowCommand {
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
                let request = KeyBackupRequest(keyFile: key, deviceID: deviceID, platform: platform, product: product, job: job,
                                               station: station, recipients: recipients, recipientFiles: recipientFiles)
                let backup: KeyBackup
                let digest: String
                let location: String
                if let store {
                    let escrowed = try await request.escrow(into: { try EscrowStores.open(store) })
                    backup = escrowed.backup
                    digest = escrowed.sha256
                    location = escrowed.store.location(of: backup.sealed.objectKey)
                } else {
                    backup = try request.seal()
                    try CLI.writeNewFile(output!, backup.sealed.ciphertext, mode: 0o600, force: false)
                    digest = backup.sealed.sha256
                    location = output!
                }
                if options.json {
                    CLI.printJSON(["file": location, "object_key": backup.sealed.objectKey.path, "sha256": digest,
                                   "public_key_sha256": backup.sealed.publicKeySHA256, "recipients": backup.recipients.map(\.description)])
                } else {
                    print("escrowed \(backup.document.algorithm.displayName) key \(backup.document.publicKeySHA256) of \(backup.document.deviceID) to \(location)")
                    print("sha256 \(digest)")
                }
            }
        }
    }
}
