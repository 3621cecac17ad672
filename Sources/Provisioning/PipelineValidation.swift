import EscrowS3
import DeviceKeys
import Age
import ParticlePlatform
import Foundation
import Yams

/// The checks that read other files: firmware images (module header, platform, flash map,
/// overlaps), the server key, the escrow recipients. All run before any device is touched.
extension PipelineReading {
    mutating func readImages(_ field: PipelineYAML.Field?, platform: Platform?) -> [FirmwareImage]? {
        guard let field else { return [] }
        guard case .sequence(let sequence) = field.node else {
            yaml.report(field.node, field.path, "expected a list of images", advice: "write one '- file: PATH' item per image")
            return nil
        }
        var images: [(image: FirmwareImage, node: Node, path: String)] = []
        var ok = true
        for (i, item) in sequence.enumerated() {
            let path = "\(field.path)[\(i)]"
            if let image = readImage(PipelineYAML.Field(node: item, path: path), platform: platform) {
                images.append((image, item, path))
            } else {
                ok = false
            }
        }
        // Images must not overwrite each other (the later one would corrupt the earlier one's CRC).
        for (later, b) in images.enumerated() {
            for a in images[..<later] {
                let aEnd = UInt64(a.image.address) + UInt64(a.image.payload.count)
                let bEnd = UInt64(b.image.address) + UInt64(b.image.payload.count)
                if UInt64(b.image.address) < aEnd, UInt64(a.image.address) < bEnd {
                    yaml.report(b.node, b.path, "overlaps \(a.path) (\(Self.range(a.image)) and \(Self.range(b.image)))",
                                advice: "each image needs its own flash region; remove one or fix its address")
                    ok = false
                }
            }
        }
        return ok ? images.map(\.image) : nil
    }

    static func range(_ image: FirmwareImage) -> String {
        "0x\(String(image.address, radix: 16))–0x\(String(UInt64(image.address) + UInt64(image.payload.count), radix: 16))"
    }

    mutating func readImage(_ field: PipelineYAML.Field, platform: Platform?) -> FirmwareImage? {
        // `- PATH` is short for `- file: PATH`.
        var fileField = field
        var keys: [String: PipelineYAML.Field] = [:]
        if case .mapping = field.node {
            guard let mapped = yaml.mapping(field.node, field.path, known: ["file", "alt", "address"]) else { return nil }
            keys = mapped
            guard let f = mapped["file"] else {
                yaml.report(field.node, "\(field.path).file", "missing", advice: "give the image file: file: firmware/photon-user.bin")
                return nil
            }
            fileField = f
        }
        guard let text = yaml.requiredString(fileField, fileField.path, parent: field.node, advice: "give the image file's path") else { return nil }
        let path = resolve(text)
        var ok = true
        var alt: UInt8 = 0
        if let f = keys["alt"], let value = yaml.integer(f, in: 0...255, advice: "firmware goes to alt 0 (internal flash)") {
            if value != 0 {
                yaml.report(f.node, f.path, "alt \(value) is not internal flash",
                            advice: "firmware images are written to alt 0 (particle-firmware-format.md §3); alt 1 holds the keys. Remove 'alt' or write 0")
                ok = false
            }
            alt = UInt8(value)
        } else if keys["alt"] != nil { ok = false }
        var address: UInt32?
        if let f = keys["address"] {
            if let value = yaml.integer(f, in: 0...Int(UInt32.max), advice: "write the flash address in hex, e.g. 0x080A0000") {
                address = UInt32(value)
            } else { ok = false }
        }

        let bytes: [UInt8]
        switch PipelineFiles.read(path, limit: PipelineFiles.firmwareLimit) {
        case .success(let read): bytes = read
        case .failure(let failure):
            let missing = if case .missing = failure { true } else { false }
            yaml.report(fileField.node, fileField.path, "\(path): \(failure.message)",
                        advice: missing ? "check the path (relative paths start at the pipeline's folder) and the variables in it"
                                        : "give a firmware image file (a module binary or a raw image)")
            return nil
        }

        var module: FirmwareModule?
        do {
            module = try FirmwareModule.parse(bytes)
        } catch let error {
            switch error {
            case .noModuleInfo, .tooShort:
                // A raw image (no module prefix) is allowed where the file says where it goes.
                if address == nil {
                    yaml.report(fileField.node, fileField.path, "\(path): \(error)",
                                advice: "use a Particle module binary, or give 'address:' to write a raw image")
                    return nil
                }
            default:
                yaml.report(fileField.node, fileField.path, "\(path): \(error)",
                            advice: "rebuild or download the binary again; keyline never flashes a damaged module")
                return nil
            }
        }
        if let module {
            if let refusal = module.dfuRefusal {
                yaml.report(fileField.node, fileField.path, "\(path): \(refusal)", advice: "remove it from the pipeline")
                ok = false
            }
            if let platform {
                do { try module.check(platform: platform) } catch {
                    yaml.report(fileField.node, fileField.path, "\(path): \(error)",
                                advice: "use the \(platform.name) build of this firmware, or fix 'platform:'")
                    ok = false
                }
            }
            if let given = address, given != module.startAddress {
                yaml.report(keys["address"]?.node, "\(field.path).address",
                            "0x\(String(given, radix: 16)) differs from the module's own start address 0x\(String(module.startAddress, radix: 16))",
                            advice: "remove 'address:'; a module is written where its header says")
                ok = false
            }
            address = module.startAddress
        }
        guard let address, ok else { return nil }
        let image = FirmwareImage(path: path, bytes: bytes, alt: alt, address: address, module: module)
        if let platform, module.map({ $0.platformID == platform.id }) ?? true,
           platform.flashRegion(containing: address, length: image.payload.count) == nil {
            let map = platform.flashMap.map(\.description).joined(separator: "; ")
            yaml.report(keys["address"]?.node ?? fileField.node, keys["address"]?.path ?? fileField.path,
                        "\(Self.range(image)) is outside \(platform.displayName)'s flash map",
                        advice: map.isEmpty ? "keyline knows no DFU flash map for \(platform.name)" : "images must lie within one of: \(map)")
            return nil
        }
        return image
    }

    mutating func readServer(_ field: PipelineYAML.Field?, platform: Platform?) -> ServerKeyBlob? {
        var keys: [String: PipelineYAML.Field] = [:]
        if let field {
            guard let mapped = yaml.mapping(field.node, field.path, known: ["key", "host", "port"]) else { return nil }
            keys = mapped
        }
        var ok = true
        var base: ServerKeyBlob.Base?
        var keyNode: Node? = field?.node
        if let f = keys["key"], let text = yaml.string(f), text != "particle" {
            keyNode = f.node
            let path = resolve(text)
            switch PipelineFiles.read(path, limit: PipelineFiles.serverKeyLimit) {
            case .success(let bytes):
                if let platform, bytes.count == platform.serverKeySlot.slot.size {
                    base = .blob(Array(bytes))
                } else {
                    do { base = .key(try KeyFile.parse(Array(bytes)).publicKey) } catch {
                        yaml.report(f.node, f.path, "\(path): not a public key (\(error))",
                                    advice: "give the server's public key (PEM or DER) or a full-size server key blob, or 'particle'")
                        ok = false
                    }
                }
            case .failure(let failure):
                yaml.report(f.node, f.path, "\(path): \(failure.message)",
                            advice: "check the path, or write 'key: particle' for Particle's cloud key")
                ok = false
            }
        } else if keys["key"] != nil, case .scalar = keys["key"]!.node {
            // `particle` or null: Particle's own key.
        } else if keys["key"] != nil {
            ok = false
        }
        var address: ServerAddress?
        if let f = keys["host"], let text = yaml.string(f) {
            do { address = try ServerAddress(host: text) } catch {
                yaml.report(f.node, f.path, error.description, advice: "give an IPv4 address or a domain name of at most 63 characters")
                ok = false
            }
        }
        var port: UInt16?
        if let f = keys["port"] {
            if let value = yaml.integer(f, in: 1...65534, advice: "give the server's port, 1…65534 (default 5683 TCP, 5684 UDP)") {
                port = UInt16(value)
            } else { ok = false }
        }
        guard ok, let platform else { return nil }
        do {
            return try ServerKeyBlob(platform: platform, base: base ?? .blob(ParticleServerKeys.defaultBlob(for: platform)),
                                     address: address, port: port)
        } catch {
            yaml.report(keyNode, keys["key"]?.path ?? "server", error.description,
                        advice: "a \(platform.cloudProtocol.rawValue.uppercased()) platform needs an \(platform.keyAlgorithm.displayName) server key")
            return nil
        }
    }

    mutating func readEscrow(_ field: PipelineYAML.Field?, _ root: Node) -> EscrowSettings? {
        var keys: [String: PipelineYAML.Field] = [:]
        if let field {
            guard let mapped = yaml.mapping(field.node, field.path, known: ["recipients", "store"]) else { return nil }
            keys = mapped
        } else if overrides.recipientsFile == nil || overrides.store == nil {
            yaml.report(root, "escrow", "missing",
                        advice: "add 'escrow:' with 'recipients:' (an age recipients file) and 'store:' (where backups go)")
            return nil
        }
        let recipients = readRecipients(keys["recipients"], parent: field?.node)
        var store: String?
        if let override = overrides.store {
            store = override.contains("://") ? override : resolveOverride(override)
        } else if let text = yaml.requiredString(keys["store"], "escrow.store", parent: field?.node,
                                                 advice: "give the backup directory or s3://bucket/prefix (or set KEYLINE_ESCROW_STORE / pass --store)") {
            store = text.contains("://") ? text : resolve(text)
            var isDirectory: ObjCBool = false
            if let path = store, !text.contains("://"), FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory),
               !isDirectory.boolValue {
                yaml.report(keys["store"]?.node, "escrow.store", "\(path) is a file, not a directory", advice: "give the backup directory")
                store = nil
            }
        }
        if let location = store, location.contains("://") {
            do {
                try EscrowStores.validate(location, environment: yaml.environment)
            } catch {
                yaml.report(keys["store"]?.node ?? field?.node, "escrow.store", "\(error)",
                            advice: "give a directory, file:///path or s3://bucket/prefix[?region=…&endpoint=…&lock=COMPLIANCE&retain-days=N]")
                store = nil
            }
        }
        guard let recipients, let store else { return nil }
        return EscrowSettings(recipients: recipients, store: store)
    }

    /// A recipients file (age -R format), or a list of age1… recipients written in the pipeline.
    mutating func readRecipients(_ field: PipelineYAML.Field?, parent: Node?) -> [X25519Recipient]? {
        let path: String
        let node: Node?
        let keyPath: String
        if let override = overrides.recipientsFile {
            path = resolveOverride(override)
            node = nil
            keyPath = "escrow.recipients"
        } else {
            guard let field else {
                yaml.report(parent, "escrow.recipients", "missing",
                            advice: "give the age recipients file (or set KEYLINE_RECIPIENTS / pass --recipients)")
                return nil
            }
            if case .sequence = field.node {
                guard let items = yaml.stringList(field) else { return nil }
                var recipients: [X25519Recipient] = []
                for (value, item) in items {
                    do { recipients.append(try X25519Recipient(value)) } catch {
                        yaml.report(item, field.path, error.description, advice: "recipients are age1… public keys (`keyline escrow keygen` prints one)")
                    }
                }
                guard recipients.count == items.count, !recipients.isEmpty else {
                    if items.isEmpty { yaml.report(field.node, field.path, "no recipients", advice: "list at least one age1… recipient") }
                    return nil
                }
                return recipients
            }
            guard let text = yaml.requiredString(field, field.path, parent: parent, advice: "give the age recipients file") else { return nil }
            path = resolve(text)
            node = field.node
            keyPath = field.path
        }
        let data: [UInt8]
        switch PipelineFiles.read(path, limit: PipelineFiles.recipientsLimit) {
        case .success(let read): data = read
        case .failure(let failure):
            yaml.report(node, keyPath, "\(path): \(failure.message)",
                        advice: "check the path; the file holds age1… recipients, one per line")
            return nil
        }
        do {
            return try X25519Recipient.parseFile(String(decoding: data, as: UTF8.self))
        } catch {
            yaml.report(node, keyPath, "\(path): \(error)",
                        advice: "the recipients file holds age1… public keys, one per line (never the identity: it stays with the RMA bench)")
            return nil
        }
    }
}
