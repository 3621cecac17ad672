import DeviceKeys
import Foundation
import ParticleDevice
import ParticlePlatform
import Testing
import TestSupport

func fixture(_ name: String) throws -> [UInt8] {
    let url = try #require(Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: nil))
    return Array(try Data(contentsOf: url))
}

@Suite struct PlatformTable {
    @Test func usbIdentitiesFromDeviceOS() throws {
        // build/platform-id.mk (device-os-keys.md §3).
        let expected: [(String, UInt16, UInt16, UInt16)] = [
            ("photon", 6, 0xC006, 0xD006), ("p1", 8, 0xC008, 0xD008), ("electron", 10, 0xC00A, 0xD00A),
            ("argon", 12, 0xC00C, 0xD00C), ("boron", 13, 0xC00D, 0xD00D), ("bsom", 23, 0xC017, 0xD017),
            ("b5som", 25, 0xC019, 0xD019), ("tracker", 26, 0xC01A, 0xD01A), ("p2", 32, 0xC020, 0xD020),
            ("msom", 35, 0xC023, 0xD023),
        ]
        for (name, id, normal, dfu) in expected {
            let platform = try Platform.named(name)
            #expect(platform.id == id)
            #expect(platform.vendorID == 0x2B04)
            #expect(platform.normalProductID == normal)
            #expect(platform.dfuProductID == dfu)
            #expect(Platform.matching(vendorID: 0x2B04, productID: dfu)! == (platform, .dfu))
            #expect(Platform.matching(vendorID: 0x2B04, productID: normal)! == (platform, .normal))
        }
        #expect(Platform.matching(vendorID: 0x1D50, productID: 0x607F)! == (Platform.core, .dfu))
        #expect(Platform.matching(vendorID: 0x0483, productID: 0xDF11) == nil)
        #expect(try Platform.named("13") == .boron)
        #expect(try Platform.named("Boron") == .boron)
        #expect(throws: PlatformError.unknownPlatform("toaster")) { try Platform.named("toaster") }
        #expect(Set(Platform.all.map(\.name)).count == Platform.all.count)
        #expect(Set(Platform.all.map(\.id)).count == Platform.all.count)
    }

    @Test func keySlotsByProtocol() {
        for platform in Platform.all where platform != .core {
            switch platform.cloudProtocol {
            case .tcp:
                #expect(platform.keyAlgorithm == .rsa)
                #expect(platform.privateKeySlot == DCTSlot(offset: 34, size: 612))
                #expect(platform.serverKeySlot.slot == DCTSlot(offset: 2082, size: 512))
                #expect(platform.serverKeySlot.portOffset == 450)
            case .udp:
                #expect(platform.keyAlgorithm == .ec)
                #expect(platform.privateKeySlot == DCTSlot(offset: 3106, size: 192))
                #expect(platform.serverKeySlot.slot == DCTSlot(offset: 3298, size: 320))
                #expect(platform.serverKeySlot.portOffset == 258)
            }
        }
        #expect([Platform.photon, .p1, .core].allSatisfy { $0.cloudProtocol == .tcp })
        // The UDP server blob covers alt_server_public_key + alt_server_address exactly.
        #expect(Platform.boron.serverKeySlot.slot.range.upperBound == DCTLayout.deviceID.offset)
        #expect(DCTLayout.altServerAddress.offset == 3298 + 192)
    }

    @Test func deviceIDRules() {
        #expect(Platform.boron.isValidDeviceID("e00fce68aabbccddeeff0011"))
        #expect(!Platform.boron.isValidDeviceID("0a10aced2021aabbccddeeff"))
        #expect(Platform.p2.isValidDeviceID("0a10aced2021aabbccddeeff"))
        #expect(Platform.photon.isValidDeviceID("3c002a000d47343432313031"))
        #expect(!Platform.photon.isValidDeviceID("3C002A000D47343432313031"))  // iSerial is lowercase
        #expect(!Platform.photon.isValidDeviceID("3c002a000d4734343231303"))
    }

    /// KeyFile refuses a "slot dump" longer than the largest slot (issue 12); that bound must
    /// follow the platform table.
    @Test func slotDumpBoundIsTheLargestKeySlot() {
        #expect(Platform.all.map(\.privateKeySlot.size).max() == KeyFile.largestSlotDump)
    }

    @Test func deviceKeysFitTheirSlots() throws {
        let rsa = try DevicePrivateKey.generate(.rsa)
        let ec = try DevicePrivateKey.generate(.ec)
        try Platform.photon.checkDeviceKey(rsa)
        try Platform.boron.checkDeviceKey(ec)
        #expect(throws: KeySlotError.wrongAlgorithm(platform: "photon", expected: .rsa, found: .ec)) {
            try Platform.photon.checkDeviceKey(ec)
        }
        #expect(throws: KeySlotError.wrongAlgorithm(platform: "boron", expected: .ec, found: .rsa)) {
            try Platform.boron.checkDeviceKey(rsa)
        }
    }

    @Test func rsa2048DoesNotFitTheTCPSlot() async throws {
        let tool = try ScratchDirectory()
        defer { tool.remove() }
        let key = try #require(KeyFile.parse(try await tool.openssl("genrsa", "-traditional", "2048")).privateKey)
        let der = key.der
        #expect {
            try Platform.photon.checkDeviceKey(key)
        } throws: { error in
            guard case .tooLarge(platform: "photon", keyLength: der.count, slotSize: 612, _) = error as? KeySlotError else { return false }
            return true
        }
        let small = try #require(KeyFile.parse(try await tool.openssl("genrsa", "-traditional", "768")).privateKey)
        #expect(throws: KeySlotError.unsupportedKeySize(platform: "photon", bits: 768)) { try Platform.photon.checkDeviceKey(small) }
        let exponent3 = try #require(KeyFile.parse(try await tool.openssl("genrsa", "-traditional", "-3", "1024")).privateKey)
        #expect(throws: KeySlotError.unsupportedExponent(platform: "photon", exponent: 3)) { try Platform.photon.checkDeviceKey(exponent3) }
    }
}

@Suite struct ServerBlobs {
    static let tcpServerFingerprint = "aa8aba3c973ed4b668999047a09597948f36eefde525352e705fe8ef98c1677e"
    static let udpServerFingerprint = "a22c78edbbefc04dec7333da227fc6f6904754d17d042099c765a02864555183"

    @Test func embeddedKeysAreParticlesFiles() throws {
        #expect(ParticleServerKeys.tcpBlob == (try fixture("tcp-server-rsa.der")))
        #expect(ParticleServerKeys.udpBlob == (try fixture("udp-server-ec.der")))
    }

    @Test func decodeParticlesBlobs() throws {
        let tcp = try ServerKeyBlob(decoding: try fixture("tcp-server-rsa.der"), cloudProtocol: .tcp, slot: Platform.photon.serverKeySlot)
        #expect(tcp.serverKey.algorithm == .rsa)
        #expect(tcp.serverKey.bits == 2048)
        #expect(tcp.serverKey.spkiDER.count == 294)
        #expect(tcp.serverKey.fingerprint == Self.tcpServerFingerprint)
        #expect(tcp.address == .domain("device.spark.io"))
        #expect(tcp.port == nil)
        #expect(tcp.url == "tcp://device.spark.io:5683")

        let udp = try ServerKeyBlob(decoding: try fixture("udp-server-ec.der"), cloudProtocol: .udp, slot: Platform.boron.serverKeySlot)
        #expect(udp.serverKey.algorithm == .ec)
        #expect(udp.serverKey.spkiDER.count == 91)
        #expect(udp.serverKey.fingerprint == Self.udpServerFingerprint)
        #expect(udp.address == .domain("$id.udp.particle.io"))
        #expect(udp.url == "udp://$id.udp.particle.io:5684")
    }

    @Test func roundTripByteExact() throws {
        for (name, platform) in [("tcp-server-rsa.der", Platform.photon), ("udp-server-ec.der", Platform.boron)] {
            let file = try fixture(name)
            let decoded = try ServerKeyBlob(decoding: file, cloudProtocol: platform.cloudProtocol, slot: platform.serverKeySlot)
            // Over the full-size file, as particle-cli does with a full-size key file.
            let rebuilt = try ServerKeyBlob(platform: platform, base: .blob(file), address: decoded.address, port: decoded.port)
            #expect(rebuilt.bytes == file)
            // From the bare key plus the decoded address.
            let fresh = try ServerKeyBlob(platform: platform, base: .key(decoded.serverKey), address: decoded.address, port: nil)
            if platform.cloudProtocol == .udp {
                #expect(fresh.bytes == file)
            } else {
                // Particle's rsa.pub.der carries a NUL after "device.spark.io"; a fresh blob leaves 0xFF
                // there. That byte is the only difference and the device ignores it (length-prefixed).
                let differences = zip(fresh.bytes, file).enumerated().filter { $0.element.0 != $0.element.1 }.map(\.offset)
                #expect(differences == [384 + 2 + 15])
                #expect(file[384 + 2 + 15] == 0x00)
                #expect(try ServerKeyBlob(decoding: fresh.bytes, cloudProtocol: .tcp, slot: platform.serverKeySlot).address == decoded.address)
            }
        }
        // The Core's slot is 2048 bytes: Particle's rsa.pub-padded.der layout.
        let core = ParticleServerKeys.defaultBlob(for: .core)
        #expect(core.count == 2048)
        #expect(Array(core.prefix(512)) == ParticleServerKeys.tcpBlob)
        #expect(try ServerKeyBlob(decoding: core, cloudProtocol: .tcp, slot: Platform.core.serverKeySlot).address == .domain("device.spark.io"))
    }

    @Test func ipv4AddressAndExplicitPort() throws {
        let blob = try ServerKeyBlob(platform: .photon, base: .blob(ParticleServerKeys.tcpBlob),
                                     address: try ServerAddress(host: "10.0.0.5"), port: 5683)
        #expect(Array(blob.bytes[384..<390]) == [0x00, 0x04, 10, 0, 0, 5])
        #expect(Array(blob.bytes[450..<452]) == [0x16, 0x33])
        let decoded = try ServerKeyBlob(decoding: blob.bytes, cloudProtocol: .tcp, slot: Platform.photon.serverKeySlot)
        #expect(decoded.address == .ipv4(10, 0, 0, 5))
        #expect(decoded.port == 5683)
        #expect(decoded.url == "tcp://10.0.0.5:5683")

        let udp = try ServerKeyBlob(platform: .boron, base: .blob(ParticleServerKeys.udpBlob),
                                    address: try ServerAddress(host: "cloud.example.com"), port: 15684)
        #expect(Array(udp.bytes[192..<194]) == [0x01, 17])
        #expect(Array(udp.bytes[194..<211]) == Array("cloud.example.com".utf8))
        #expect(Array(udp.bytes[258..<260]) == [0x3D, 0x44])
        #expect(udp.url == "udp://cloud.example.com:15684")
        // Only the address and the port changed; the key and fill are Particle's.
        let changed = zip(udp.bytes, ParticleServerKeys.udpBlob).enumerated().filter { $0.element.0 != $0.element.1 }.map(\.offset)
        #expect(changed.allSatisfy { (192..<211).contains($0) || (258..<260).contains($0) })
    }

    @Test func refusals() async throws {
        let longHost = String(repeating: "a", count: 60) + ".com"
        #expect(throws: ServerAddressError.hostTooLong(64)) { try ServerAddress(host: longHost) }
        #expect(throws: ServerAddressError.nonPrintableHost) { try ServerAddress(host: "bad\thost") }
        #expect(throws: ServerAddressError.nonPrintableHost) { try ServerAddress(host: "bad host") }
        #expect(throws: ServerAddressError.invalidIPv4("10.0.0")) { try ServerAddress(host: "10.0.0") }
        #expect(throws: ServerAddressError.invalidIPv4("10.0.0.256")) { try ServerAddress(host: "10.0.0.256") }
        #expect(throws: ServerAddressError.invalidIPv4("0.0.0.0")) { try ServerAddress(host: "0.0.0.0") }
        #expect(throws: ServerAddressError.emptyHost) { try ServerAddress(host: "") }
        _ = try ServerAddress(host: String(repeating: "a", count: 59) + ".com")  // 63 is the limit

        // A server key too large for the room before the address.
        let tool = try ScratchDirectory()
        defer { tool.remove() }
        let big = try #require(KeyFile.parse(try await tool.openssl("genrsa", "-traditional", "4096")).privateKey).publicKey
        #expect(throws: ServerKeyBlobError.keyTooLarge(keyLength: big.spkiDER.count, room: 384, cloudProtocol: .tcp)) {
            try ServerKeyBlob(platform: .photon, base: .key(big), address: nil, port: nil)
        }
        // The wrong kind of server key for the protocol.
        let ec = try DevicePrivateKey.generate(.ec).publicKey
        #expect(throws: ServerKeyBlobError.wrongKeyAlgorithm(found: .ec, cloudProtocol: .tcp)) {
            try ServerKeyBlob(platform: .photon, base: .key(ec), address: nil, port: nil)
        }
        #expect(throws: ServerKeyBlobError.invalidPort(0xFFFF)) {
            try ServerKeyBlob(platform: .boron, base: .blob(ParticleServerKeys.udpBlob), address: nil, port: 0xFFFF)
        }
        #expect(throws: ServerKeyBlobError.wrongSize(actual: 320, expected: 512, cloudProtocol: .tcp)) {
            try ServerKeyBlob(decoding: ParticleServerKeys.udpBlob, cloudProtocol: .tcp, slot: Platform.photon.serverKeySlot)
        }
        #expect(throws: ServerKeyBlobError.blank) {
            try ServerKeyBlob(decoding: [UInt8](repeating: 0xFF, count: 320), cloudProtocol: .udp, slot: Platform.boron.serverKeySlot)
        }
        // A stored domain with a bad length byte.
        var corrupt = ParticleServerKeys.udpBlob
        corrupt[193] = 70
        #expect(throws: ServerKeyBlobError.address(.malformed("a domain of length 70, over the device's 63"))) {
            try ServerKeyBlob(decoding: corrupt, cloudProtocol: .udp, slot: Platform.boron.serverKeySlot)
        }
    }

    @Test func decodeFromADCTDump() throws {
        var dct = [UInt8](repeating: 0xFF, count: DCTLayout.regionSize)
        let blob = try ServerKeyBlob(platform: .argon, base: .blob(ParticleServerKeys.udpBlob), address: try ServerAddress(host: "192.168.1.20"), port: nil)
        dct.replaceSubrange(Platform.argon.serverKeySlot.slot.range, with: blob.bytes)
        let decoded = try ServerKeyBlob(dct: dct, platform: .argon)
        #expect(decoded.url == "udp://192.168.1.20:5684")
        #expect(throws: ServerKeyBlobError.blank) { try ServerKeyBlob(dct: dct, platform: .photon) }
        #expect(throws: ServerKeyBlobError.dctTooShort(actual: 3000, needed: 3618)) { try ServerKeyBlob(dct: Array(dct.prefix(3000)), platform: .argon) }
    }
}

extension ScratchDirectory {
    /// Runs `openssl` in this directory to make keys OpenSSL's way; returns its standard output.
    func openssl(_ arguments: String...) async throws -> [UInt8] {
        try await ChildProcess.run("/usr/bin/openssl", arguments, in: url, timeout: .seconds(120)).requireSuccess().stdoutBytes
    }
}
