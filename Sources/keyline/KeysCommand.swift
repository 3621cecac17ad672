import ArgumentParser
import CommandReporting
import DeviceKeys
import Foundation
import ParticlePlatform
import RMABench

/// `keyline keys …`: the same files and names as `particle keys` (particle-cli-keys.md §1), made
/// with OpenSSL's library instead of the `openssl` binary.
struct KeysCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "Make, inspect and format device and server keys.",
        subcommands: [New.self, Save.self, Load.self, Server.self, Address.self, Send.self, Doctor.self, Inspect.self, ServerBlob.self,
                      Revoke.self, Supersede.self]
    )
}

extension KeysCommand {
    struct New: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Generate a device key pair: NAME.pem, NAME.pub.pem and NAME.der.",
            discussion: """
                The key suits the platform's slot: RSA-1024 as PKCS#1 DER (at most 612 bytes) for TCP \
                platforms (core, photon, p1), EC P-256 as SEC1 DER (121 bytes) for UDP platforms (every \
                other). NAME.der is what goes into the device; NAME.pub.pem is what the cloud registers. \
                Without --platform, as `particle keys new`, the platform is learned from the device \
                (--device ID, or the only device attached; several attached is an error listing them) \
                and NAME defaults to its device ID; with no device attached and no --device, the key is \
                EC (every current platform) named device_ec. Nothing is written to a device. Private \
                key files are created with mode 0600, and no existing file is overwritten unless \
                --force is given.

                \(KeylineExit.helpText)
                """)

        @Option(help: "Platform the key is for (photon, boron, …); decides RSA or EC. Default: the attached device's.")
        var platform: String?

        @OptionGroup var target: DeviceOptions

        @Flag(help: "Replace existing NAME.pem / NAME.pub.pem / NAME.der.")
        var force = false

        @OptionGroup var output: OutputOptions

        @Argument(help: "File name without extension (a trailing .pem/.der is dropped). Default: device_<alg>.")
        var name: String?

        func run() async throws {
            try await CLI.run(json: output.json) {
                let target = try platform.map { name throws(PlatformError) in try Platform.named(name) }
                let made = try await NewDeviceKey.make(platform: target, device: self.target.device, on: self.target.bus)
                let key = made.key
                let files = made.files(named: name)
                if !force, let existing = files.first(where: { FileManager.default.fileExists(atPath: $0) }) {
                    throw CommandFailure.outputExists(existing)
                }
                try CLI.writeNewFile(files[0], Array(try key.pem().utf8), mode: 0o600, force: force)
                try CLI.writeNewFile(files[1], Array(key.publicKey.pem.utf8), mode: 0o644, force: force)
                var der = key.der
                defer { SecretBytes.clear(&der) }
                try CLI.writeNewFile(files[2], der, mode: 0o600, force: force)
                if output.json {
                    CLI.printJSON([
                        "files": files, "algorithm": made.algorithm.rawValue, "derLength": key.derCount,
                        "fingerprint": key.publicKey.fingerprint, "platform": made.platform?.name ?? NSNull(),
                        "deviceID": made.deviceID ?? NSNull(),
                    ])
                } else {
                    print("New key \(files[2]) created" + (made.deviceID.map { " for device \($0)" } ?? "")
                          + " (\(key.publicKey.bits == 256 ? "EC P-256, SEC1" : "RSA-1024, PKCS#1"), \(key.der.count) bytes)")
                    print("fingerprint \(key.publicKey.fingerprint)")
                }
            }
        }
    }

    struct Inspect: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show what a key file holds and whether it fits a device slot.",
            discussion: """
                Reads PEM or DER, private or public, RSA or EC — what `particle keys send` accepts — and a \
                raw slot dump as `particle keys save` writes it. Prints the algorithm, size, public-key \
                fingerprint (SHA-256 of the SubjectPublicKeyInfo DER) and public key PEM. A PKCS#8 private \
                key (OpenSSL 3's default, 634 bytes for RSA-1024) is converted to PKCS#1 for the device. \
                With --platform, exits 65 when the key cannot be used on that platform.

                \(KeylineExit.helpText)
                """)

        @Option(help: "Check the key against this platform's slot.")
        var platform: String?

        @OptionGroup var output: OutputOptions

        @Argument(help: "Key file: .pem, .pub.pem, .der or a slot dump.")
        var file: String

        func run() async throws {
            try await CLI.run(json: output.json) {
                let target = try platform.map { name throws(PlatformError) in try Platform.named(name) }
                let bytes = try CLI.readFile(file, limit: KeyFile.maximumFileSize, what: "a key file")
                let parsed: KeyFile
                do { parsed = try KeyFile.parse(bytes) } catch { throw error.about(file: file) }
                let fits = KeySlotVerdict.verdicts(for: parsed, platform: target)
                let failure = target.flatMap { target in fits.first(where: { $0.platform == target.name })?.error?.about(file: file) }
                if output.json {
                    var object: [String: Any] = [
                        "file": file, "container": parsed.container.rawValue, "encoding": parsed.encoding.rawValue,
                        "type": parsed.privateKey == nil ? "public" : "private",
                        "algorithm": parsed.publicKey.algorithm.rawValue, "bits": parsed.publicKey.bits,
                        "fingerprint": parsed.publicKey.fingerprint, "publicKeyPEM": parsed.publicKey.pem,
                        "slots": fits.map(\.json),
                    ]
                    object["curve"] = parsed.publicKey.curve
                    object["exponent"] = parsed.publicKey.rsaPublicExponent
                    object["deviceDERLength"] = parsed.privateKey?.der.count
                    // One command, one JSON document: a key that does not fit is the inspection
                    // with its error, not an inspection followed by a second error object.
                    if let failure {
                        object["error"] = CLI.errorJSON(failure)
                        CLI.printJSON(object)
                        throw ExitCode(failure.exit.rawValue)
                    }
                    CLI.printJSON(object)
                } else {
                    print(Self.describe(parsed, file: file, fits: fits))
                }
                if let failure { throw failure }
            }
        }

        static func describe(_ parsed: KeyFile, file: String, fits: [KeySlotVerdict]) -> String {
            let key = parsed.publicKey
            var lines = ["file:        \(file)"]
            var format = "\(parsed.container.rawValue), \(parsed.encoding.rawValue)"
            if parsed.encoding == .pkcs8, let device = parsed.privateKey {
                format += " (OpenSSL 3 default; converted to \(device.algorithm == .rsa ? "PKCS#1" : "SEC1"), \(device.der.count) bytes, for the device)"
            }
            lines.append("format:      \(format)")
            lines.append("type:        \(parsed.privateKey == nil ? "public key" : "private key")")
            let size = key.curve.map { "P-256 (\($0))" } ?? "\(key.bits) bits, e=\(key.rsaPublicExponent.map(String.init) ?? "?")"
            lines.append("algorithm:   \(key.algorithm.displayName) \(size)")
            lines.append("fingerprint: \(key.fingerprint)")
            for fit in fits { lines.append("slot:        \(fit.summary)") }
            lines.append(key.pem.trimmingCharacters(in: .newlines))
            return lines.joined(separator: "\n")
        }
    }

    struct ServerBlob: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "server-blob",
            abstract: "Make the server key + address blob a device keeps in its DCT.",
            discussion: """
                512 bytes for TCP platforms (DCT 2082), 320 for UDP platforms (DCT 3298): the server's \
                public key DER, 0xFF fill, and the server address at +384 / +192 with the port at address \
                + 66 — as `particle keys server` formats it. Without --key, Particle's own server key (and \
                its address, unless --host is given). --key takes a public key (PEM or DER) or a full-size \
                blob, which is kept byte for byte except the address and port. Without --port the device \
                uses 5683 (TCP) or 5684 (UDP). Hosts are an IPv4 address or a domain of at most 63 \
                printable characters; `$id` is expanded by the device.

                \(KeylineExit.helpText)
                """)

        @Option(help: "Platform the blob is for (decides TCP or UDP layout).")
        var platform: String

        @Option(help: "Server public key (PEM/DER) or full-size blob. Default: Particle's cloud key.")
        var key: String?

        @Option(help: "Server host: IPv4 address or domain name (max 63 characters).")
        var host: String?

        @Option(help: "Server port (1–65534).")
        var port: UInt16?

        @Option(name: .shortAndLong, help: "Output file.")
        var output: String

        @Flag(help: "Replace an existing output file.")
        var force = false

        @OptionGroup var options: OutputOptions

        func run() async throws {
            try await CLI.run(json: options.json) {
                let target = try Platform.named(platform)
                let address = try host.map { host throws(ServerAddressError) in try ServerAddress(host: host) }
                let bytes = try key.map { try CLI.readFile($0, limit: KeyFile.maximumFileSize, what: "a key file") }
                let blob: ServerKeyBlob
                do {
                    blob = try ServerKeyBlob(platform: target, keyFile: bytes, address: address, port: port)
                } catch {
                    throw key.map { error.about(file: $0) } ?? error.reportable
                }
                try CLI.writeNewFile(output, blob.bytes, mode: 0o644, force: force)
                if options.json {
                    CLI.printJSON(ServerKeySlotReading(blob: blob, label: target.name).json.merging(["file": output]) { $1 })
                } else {
                    print("wrote \(output) (\(blob.bytes.count) bytes for \(target.name)): \(blob.url), server key \(blob.serverKey)")
                }
            }
        }
    }

    struct Address: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the server address in a server key blob or a DCT dump.",
            discussion: """
                Without FILE, as `particle keys address`: reads the server key slot of the device \
                (--device ID, or the only one attached) and prints its URL. FILE is a server key blob \
                (512 bytes TCP, 320 UDP, 2048 Core) or a dump of the 16 KB DCT (DFU alt 1 from address 0). For a DCT dump without --platform, both the TCP and the UDP \
                server slots are shown. Prints URLs as `particle keys address` does, e.g. \
                udp://$id.udp.particle.io:5684.

                \(KeylineExit.helpText)
                """)

        @Option(help: "Platform whose slot to decode (needed for a 2048-byte Core blob).")
        var platform: String?

        @OptionGroup var output: OutputOptions

        @OptionGroup var device: DeviceOptions

        @Argument(help: "Blob or DCT dump. Default: the attached device's server key slot.")
        var file: String?

        func run() async throws {
            try await CLI.run(json: output.json) {
                guard let file else {
                    let (deviceID, slot) = try await ServerKeySlotIO.read(device: device.device, on: device.bus)
                    if output.json {
                        CLI.printJSON(["deviceID": deviceID, "addresses": [slot.json]])
                    } else {
                        print(slot.blob?.url ?? slot.line)
                    }
                    return
                }
                let target = try platform.map { name throws(PlatformError) in try Platform.named(name) }
                let bytes = try CLI.readFile(file)
                let reports: [ServerKeySlotReading]
                do {
                    reports = try ServerKeySlotReading.readings(ofFile: bytes, platform: target)
                } catch {
                    throw error.about(file: file)
                }
                if output.json {
                    CLI.printJSON(["file": file, "addresses": reports.map(\.json)])
                } else {
                    for report in reports { print(report.line) }
                }
            }
        }
    }
}

/// A platform's verdict on a key, as `keys inspect` prints it.
extension KeySlotVerdict {
    var summary: String {
        let name = "\(label) key slot, \(slotSize) bytes"
        if let error { return "\(name): does not fit — \(error)" }
        return "\(name): fits" + (derLength.map { " (\($0) bytes)" } ?? " (public key: matches the algorithm)")
    }

    var json: [String: Any] {
        var object: [String: Any] = ["platform": platform, "slotSize": slotSize, "fits": error == nil]
        if let error { object["reason"] = error.description; object["kind"] = error.kind }
        return object
    }
}

/// A decoded server key slot, as `keys address`, `keys server` and `keys server-blob` print it.
extension ServerKeySlotReading {
    var line: String {
        guard let blob else { return "\(label): blank — the device uses Particle's built-in server key and address" }
        let stored = blob.address == nil ? " (no address stored: device default)" : ""
        return "\(label): \(blob.url)\(stored)  server key \(blob.serverKey)"
    }

    var json: [String: Any] {
        var object: [String: Any] = ["label": label, "protocol": cloudProtocol.rawValue]
        guard let blob else { object["blank"] = true; return object }
        object["url"] = blob.url
        object["host"] = blob.address?.host ?? NSNull()
        object["port"] = Int(blob.effectivePort)
        object["portIsDefault"] = blob.port == nil
        object["serverKeyFingerprint"] = blob.serverKey.fingerprint
        return object
    }
}
