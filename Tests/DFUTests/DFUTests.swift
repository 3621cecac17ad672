import DFU
import DeviceBus
import Foundation
import Testing

// Protocol-layer tests that need no device: descriptor, status, layout and suffix formats, and the
// client's request sequences against a scripted transport. Client-against-simulated-device tests
// live in SimulatorTests.

@Suite struct MemoryLayoutTests {
    @Test func photonInternalFlash() throws {
        let layout = try DfuSeMemoryLayout(parsing: "@Internal Flash   /0x08000000/03*016Ka,01*016Kg,01*064Kg,07*128Kg")
        #expect(layout.name == "Internal Flash")
        #expect(layout.segments.count == 4)
        #expect(layout.segments[0] == .init(start: 0x0800_0000, sectorSize: 16 * 1024, sectorCount: 3, attributes: .readable))
        #expect(layout.segments[1].start == 0x0800_C000)
        #expect(layout.segments[1].attributes == [.readable, .erasable, .writable])
        #expect(layout.segments[2] == .init(start: 0x0801_0000, sectorSize: 64 * 1024, sectorCount: 1, attributes: [.readable, .erasable, .writable]))
        #expect(layout.segments[3].start == 0x0802_0000)
        #expect(layout.segments[3].end == 0x0810_0000)
        #expect(layout.size == 1024 * 1024)
        #expect(!layout.isProtected)
    }

    @Test func gen3LayoutsAndProtection() throws {
        let flash = try DfuSeMemoryLayout(parsing: "@Internal Flash   /0x00000000/1*004Ka,47*004Kg,192*004Kg,4*004Kg,4*004Kg,8*004Ka")
        #expect(flash.size == 256 * 4096)
        #expect(flash.segment(containing: 0x0FFF)?.attributes == .readable)
        #expect(flash.segment(containing: 0x1000)?.attributes.contains(.writable) == true)
        let dct = try DfuSeMemoryLayout(parsing: "@DCT Flash   /0x00000000/1*016Ke")
        #expect(dct.segments == [.init(start: 0, sectorSize: 16384, sectorCount: 1, attributes: [.readable, .writable])])
        #expect(dct.erasableSectors(covering: 3106, length: 192).isEmpty)  // 'e' is never erased
        let protected = try DfuSeMemoryLayout(parsing: "@DCT Flash   /0x00000000/1*016Kb")
        #expect(protected.isProtected)
        let external = try DfuSeMemoryLayout(parsing: "@External Flash   /0x80000000/1024*004Kg")
        #expect(external.segments[0].start == 0x8000_0000 && external.segments[0].sectorCount == 1024)
    }

    @Test func multipleRegionsAndByteUnits() throws {
        // ST option bytes use a space for "bytes"; a second /0x…/ starts a new region.
        let layout = try DfuSeMemoryLayout(parsing: "@Option Bytes  /0x1FFFC000/01*016 e/0x1FFEC000/01*016 e")
        #expect(layout.segments.count == 2)
        #expect(layout.segments[0] == .init(start: 0x1FFF_C000, sectorSize: 16, sectorCount: 1, attributes: [.readable, .writable]))
        #expect(layout.segments[1].start == 0x1FFE_C000)
    }

    @Test func erasableSectorsCoverOnlyTheRange() throws {
        let layout = try DfuSeMemoryLayout(parsing: "@Internal Flash   /0x08000000/03*016Ka,01*016Kg,01*064Kg,07*128Kg")
        // 10 000 bytes at 0x08020000 touch one 128 KB sector.
        #expect(layout.erasableSectors(covering: 0x0802_0000, length: 10_000) == [0x0802_0000])
        // From inside the 16 KB 'g' sector into the 64 KB one: both, and nothing read-only.
        #expect(layout.erasableSectors(covering: 0x0800_F000, length: 0x2000) == [0x0800_C000, 0x0801_0000])
        // Read-only sectors are never erased.
        #expect(layout.erasableSectors(covering: 0x0800_0000, length: 0xC000).isEmpty)
        #expect(layout.segments(covering: 0x080F_FFFF, length: 2) == nil)
    }

    @Test(arguments: ["Internal Flash", "@Internal Flash", "@X/0x0/", "@X/zz/01*016Kg", "@X/0x0/01*016K", "@X/0x0/0*016Kg", "@X/0xFFFFF000/2*004Kg"])
    func malformedLayoutsAreRejected(string: String) {
        #expect(throws: DfuSeMemoryLayout.ParseError.self) { try DfuSeMemoryLayout(parsing: string) }
    }

    /// Issue 12: a device's layout string with huge counts or sizes trapped on overflow; each is
    /// a parse error instead.
    @Test(arguments: ["@X/0x0/9999999999999999999*4Kg", "@X/0x0/9223372036854775807*4Kg", "@X/0x0/1*18446744073709551615Mg",
                      "@X/0x0/2*9999999999999999Mg", "@X/0x0/1*4294967296Bg", "@X/0xFFFFFFFF/1*2Bg", "@X/0x0/1*\u{0663}Kg",
                      "@X/0x0/4611686018427387904*4Bg"])
    func hugeCountsAndSizesAreErrorsNotTraps(_ string: String) {
        #expect(throws: DfuSeMemoryLayout.ParseError.self) { try DfuSeMemoryLayout(parsing: string) }
    }

    @Test func canonicalStringParsesBack() throws {
        let layout = try DfuSeMemoryLayout(parsing: "@Internal Flash   /0x08000000/03*016Ka,01*016Kg,01*064Kg,07*128Kg")
        #expect(try DfuSeMemoryLayout(parsing: layout.layoutString) == layout)
    }
}

@Suite struct DescriptorTests {
    @Test func particleFunctionalDescriptor() throws {
        let bytes: [UInt8] = [0x09, 0x21, 0x0B, 0xFF, 0x00, 0x00, 0x10, 0x1A, 0x01]
        let descriptor = try DFUFunctionalDescriptor(bytes: bytes)
        #expect(descriptor.attributes == [.canDownload, .canUpload, .willDetach])
        #expect(descriptor.detachTimeoutMilliseconds == 255)
        #expect(descriptor.transferSize == 4096)
        #expect(descriptor.dfuVersion == 0x011A && descriptor.isDfuSe)
        #expect(DFUFunctionalDescriptor.particle.bytes == bytes)
    }

    @Test func dfu10FunctionalDescriptorHasNoVersion() throws {
        let descriptor = try DFUFunctionalDescriptor(bytes: [0x07, 0x21, 0x03, 0x00, 0x10, 0x00, 0x04])
        #expect(descriptor.dfuVersion == 0x0100)
        #expect(descriptor.transferSize == 1024)
    }

    @Test func configurationRoundTripWithFunctionalAfterLastAlt() throws {
        let interfaces = (0..<3).map { USBInterfaceDescriptor(interfaceNumber: 0, alternateSetting: UInt8($0), interfaceClass: 0xFE,
                                                              interfaceSubClass: 1, interfaceProtocol: 2, stringIndex: UInt8(6 + $0)) }
        let configuration = USBConfiguration(interfaces: interfaces, dfuFunctional: .particle)
        let bytes = configuration.bytes
        #expect(bytes.count == 9 + 3 * 9 + 9)  // USB_DFU_CONFIG_DESC_SIZ = 18 + 9*N
        #expect(Array(bytes.suffix(9)) == DFUFunctionalDescriptor.particle.bytes)
        let parsed = try USBConfiguration(bytes: bytes)
        #expect(parsed == configuration)
        #expect(parsed.interfaces.allSatisfy { $0.isDFUMode })
    }

    @Test func truncatedConfigurationIsRejected() {
        let bytes = USBConfiguration(interfaces: [], dfuFunctional: .particle).bytes
        #expect(throws: DFUError.Reason.self) { try USBConfiguration(bytes: Array(bytes.dropLast())) }
    }

    @Test func deviceDescriptorRoundTrip() throws {
        let descriptor = USBDeviceDescriptor(vendorID: 0x2B04, productID: 0xD00D, deviceVersion: 0x0251)
        #expect(descriptor.bytes.count == 18)
        #expect(try USBDeviceDescriptor(bytes: descriptor.bytes) == descriptor)
        #expect(throws: DFUError.Reason.self) { try USBDeviceDescriptor(bytes: Array(descriptor.bytes.prefix(17))) }
    }

    @Test func stringDescriptors() throws {
        let encoded = USBStringDescriptor.encode("@DCT Flash   /0x00000000/1*016Ke")
        #expect(encoded[0] == UInt8(encoded.count) && encoded[1] == 3)
        #expect(try USBStringDescriptor.decode(encoded) == "@DCT Flash   /0x00000000/1*016Ke")
        #expect(USBStringDescriptor.encodeLanguages() == [4, 3, 0x09, 0x04])
        // bLength larger than what arrived is tolerated (dfu-util patches it too).
        #expect(try USBStringDescriptor.decode([10, 3, 0x41, 0, 0x42, 0]) == "AB")
    }
}

@Suite struct StatusAndCommandTests {
    @Test func statusRecordWith24BitPollTimeout() throws {
        let status = try #require(DFUStatus(bytes: [0x00, 0xF4, 0x01, 0x00, 0x04, 0x00]))
        #expect(status.status == .ok && status.state == .dnbusy && status.pollTimeoutMilliseconds == 500)
        #expect(DFUStatus(bytes: [0, 0x01, 0x02, 0x03, 5, 0])?.pollTimeoutMilliseconds == 0x030201)
        #expect(status.bytes == [0x00, 0xF4, 0x01, 0x00, 0x04, 0x00])
        #expect(DFUStatus(bytes: [0, 0, 0, 0, 2]) == nil)          // dfu-util wants exactly 6 bytes
        #expect(DFUStatus(bytes: [0, 0, 0, 0, 0x0F, 0]) == nil)    // not a state (Gen2's UPLOAD-1 bug)
        #expect(DFUStatus(bytes: [0x10, 0, 0, 0, 2, 0]) == nil)    // dfu-util says INVALID above 0x0F
    }

    @Test func everyStatusCodeHasDfuUtilText() {
        #expect(DFUStatusCode.allCases.count == 16)
        #expect(DFUStatusCode.errAddress.meaning == "Cannot program memory due to received address that is out of range")
        #expect(DFUStatusCode.errStalledPkt.name == "errSTALLEDPKT")
    }

    @Test func dfuseCommandBytes() {
        #expect(DfuSeCommand.setAddressPointer(0x0802_0000).bytes == [0x21, 0x00, 0x00, 0x02, 0x08])
        #expect(DfuSeCommand.erasePage(0x0802_0000).bytes == [0x41, 0x00, 0x00, 0x02, 0x08])
        #expect(DfuSeCommand.massErase.bytes == [0x41])
        #expect(DfuSeCommand(bytes: [0x21, 0x22, 0, 0, 0]) == .setAddressPointer(0x22))
        #expect(DfuSeCommand(bytes: [0x21, 0x22]) == nil)
    }

    @Test func errorDescriptionNamesOperationAltAddressAndStatus() {
        let error = DFUError(operation: .download, alt: 1, address: 3106, reason: .deviceStatus(.errWrite, state: .dfuError), recovered: true)
        #expect(error.description.contains("download"))
        #expect(error.description.contains("alt 1"))
        #expect(error.description.contains("0x00000c22"))
        #expect(error.description.contains("errWRITE"))
        #expect(error.deviceStatus == .errWrite)
        let protected = DFUError(operation: .upload, alt: 1, reason: .deviceProtected)
        #expect(protected.description.contains("protected"))
    }
}

@Suite struct FileSuffixTests {
    @Test func crcIsZlibCrc32WithoutFinalXor() {
        // CRC-32 check value of "123456789" is 0xCBF43926; without the final XOR it is its complement.
        #expect(DFUFileSuffix.crc(Array("123456789".utf8)) == ~UInt32(0xCBF4_3926))
    }

    @Test func suffixRoundTripAndRejection() throws {
        let payload = (0..<1000).map { UInt8(truncatingIfNeeded: $0) }
        let file = DFUFileSuffix(productID: 0xD006, vendorID: 0x2B04, dfuVersion: 0x0100).appended(to: payload)
        #expect(file.count == 1016)
        #expect(Array(file[1000..<1012]) == [0xFF, 0xFF, 0x06, 0xD0, 0x04, 0x2B, 0x00, 0x01, 0x55, 0x46, 0x44, 0x10])
        let suffix = try #require(DFUFileSuffix(file: file))
        #expect(suffix.vendorID == 0x2B04 && suffix.productID == 0xD006)
        #expect(DFUFileSuffix.payload(of: file) == payload)
        var corrupted = file
        corrupted[10] ^= 1
        #expect(DFUFileSuffix(file: corrupted) == nil)
        #expect(DFUFileSuffix.payload(of: payload) == payload)
    }
}

/// A transport that answers from a script and records what the client sent.
final class ScriptedTransport: ControlTransport, @unchecked Sendable {
    enum Answer { case data([UInt8]), fail(USBTransferError) }
    private let lock = NSLock()
    private var answers: [Answer]
    private(set) var sent: [ControlSetup] = []

    init(_ answers: [Answer]) { self.answers = answers }

    func control(_ setup: ControlSetup, data: [UInt8], timeout: Duration) async throws(USBTransferError) -> [UInt8] {
        let answer: Answer = lock.withLock {
            sent.append(setup)
            return answers.isEmpty ? .fail(.stall) : answers.removeFirst()
        }
        switch answer {
        case .data(let bytes): return bytes
        case .fail(let error): throw error
        }
    }

    func selectAlternateSetting(interface: UInt8, alternateSetting: UInt8) async throws(USBTransferError) {}

    var requests: [UInt8] { lock.withLock { sent.map(\.request) } }
}

func status(_ state: DFUState, _ code: DFUStatusCode = .ok, poll: UInt32 = 0) -> ScriptedTransport.Answer {
    .data(DFUStatus(status: code, pollTimeoutMilliseconds: poll, state: state).bytes)
}

@Suite struct RequestSequenceTests {
    @Test func commandNeedsDnbusyThenDnloadIdle() async throws {
        let transport = ScriptedTransport([.data([]), status(.dnbusy), status(.dnloadIdle)])
        try await DFUInterface(transport: transport).dfuseCommand(.setAddressPointer(0x22))
        #expect(transport.requests == [1, 3, 3])
        #expect(transport.sent[0].value == 0 && transport.sent[0].length == 5)
    }

    @Test func commandAnsweredWithoutDnbusyIsAProtocolError() async {
        let transport = ScriptedTransport([.data([]), status(.dnloadIdle)])
        await #expect(throws: DFUError.Reason.unexpectedState(.dnloadIdle, expected: [.dnbusy])) {
            try await DFUInterface(transport: transport).dfuseCommand(.erasePage(0))
        }
    }

    @Test func errorStatusBecomesDeviceStatus() async {
        let transport = ScriptedTransport([.data([]), status(.dnbusy), status(.dfuError, .errAddress)])
        await #expect(throws: DFUError.Reason.deviceStatus(.errAddress, state: .dfuError)) {
            try await DFUInterface(transport: transport).dfuseCommand(.erasePage(0))
        }
    }

    @Test func pollTimeoutIsHonouredBetweenStatusRequests() async throws {
        // A device reporting 30 ms (like the Gen2 DCT after ERASE) is polled again, not abandoned.
        let transport = ScriptedTransport([.data([]), status(.dnbusy, poll: 30), status(.dnbusy, poll: 30), status(.dnloadIdle)])
        try await DFUInterface(transport: transport).dfuseCommand(.erasePage(0))
        #expect(transport.requests == [1, 3, 3, 3])
    }

    @Test func stuckDeviceIsGivenUpOn() async {
        let transport = ScriptedTransport([.data([])] + Array(repeating: status(.dnbusy), count: 200))
        await #expect(throws: DFUError.Reason.stuckBusy(polls: 101)) {
            try await DFUInterface(transport: transport).dfuseCommand(.erasePage(0))
        }
    }

    @Test func ensureIdleClearsErrorAndAbortsTransfers() async throws {
        let transport = ScriptedTransport([status(.dfuError, .errWrite), .data([]), status(.uploadIdle), .data([]), status(.dfuIdle)])
        let final = try await DFUInterface(transport: transport).ensureIdle()
        #expect(final.state == .dfuIdle)
        #expect(transport.requests == [3, 4, 3, 6, 3])
    }

    @Test func runtimeDeviceIsRefused() async {
        let transport = ScriptedTransport([status(.appIdle)])
        await #expect(throws: DFUError.Reason.notInDFUMode(.appIdle)) { _ = try await DFUInterface(transport: transport).ensureIdle() }
    }

    @Test func leaveToleratesADeviceThatResetsBeforeAnswering() async throws {
        let transport = ScriptedTransport([.data([]), .fail(.disconnected)])
        try await DFUInterface(transport: transport).leave()
        #expect(transport.sent.map(\.request) == [1, 3])
        #expect(transport.sent[0].length == 0 && transport.sent[0].value == 2)
    }

    /// Both bootloaders reset only after the final status reply (reference §2.2): an I/O error or
    /// a timeout there is not proof the device left, and must not be reported as success.
    @Test(arguments: [USBTransferError.io("LIBUSB_ERROR_IO"), .timeout])
    func leaveReportsAFinalStatusThatFailedOtherwise(error: USBTransferError) async throws {
        let transport = ScriptedTransport([.data([]), .fail(error)])
        await #expect(throws: DFUError.Reason.transfer(error, request: .getStatus)) {
            try await DFUInterface(transport: transport).leave()
        }
    }

    @Test func leaveAcceptsGen2AndGen3Answers() async throws {
        try await DFUInterface(transport: ScriptedTransport([.data([]), status(.dnloadIdle)])).leave()
        try await DFUInterface(transport: ScriptedTransport([.data([]), status(.manifest)])).leave()
        await #expect(throws: DFUError.Reason.self) {
            try await DFUInterface(transport: ScriptedTransport([.data([]), status(.dfuError, .errNotDone)])).leave()
        }
    }
}

@Suite struct DfuSeFileTests {
    @Test func roundTripWithTwoTargets() throws {
        let file = DfuSeFile(targets: [
            .init(alt: 0, name: "Internal Flash", elements: [.init(address: 0x0802_0000, data: Array(repeating: 0xAB, count: 1000)),
                                                             .init(address: 0x0806_0000, data: [1, 2, 3])]),
            .init(alt: 1, elements: [.init(address: 2082, data: Array(repeating: 0x5C, count: 512))]),
        ], vendorID: 0x2B04, productID: 0xD006)
        let bytes = file.bytes
        #expect(Array(bytes.prefix(6)) == Array("DfuSe".utf8) + [1])
        // DFUImageSize covers the whole file; the suffix says DfuSe.
        #expect(UInt32(bytes[6]) | UInt32(bytes[7]) << 8 | UInt32(bytes[8]) << 16 | UInt32(bytes[9]) << 24 == UInt32(bytes.count))
        #expect(bytes[10] == 2)
        #expect(Array(bytes[11..<17]) == Array("Target".utf8))
        let parsed = try DfuSeFile(bytes: bytes)
        #expect(parsed == file)
        #expect(parsed.suffix.dfuVersion == 0x011A && parsed.suffix.vendorID == 0x2B04)
    }

    @Test func damagedFilesAreRejected() {
        let good = DfuSeFile(targets: [.init(alt: 0, elements: [.init(address: 0, data: [1, 2, 3, 4])])]).bytes
        var badCRC = good
        badCRC[20] ^= 0xFF
        #expect(throws: DfuSeFile.FormatError.self) { try DfuSeFile(bytes: badCRC) }
        // A plain-DFU suffix is not a DfuSe file.
        let plain = DFUFileSuffix().appended(to: Array(good.dropLast(16)))
        #expect(throws: DfuSeFile.FormatError.self) { try DfuSeFile(bytes: plain) }
        // An element claiming more bytes than its target holds.
        var body = Array(good.dropLast(16))
        body[11 + 274 + 4] = 0xFF
        #expect(throws: DfuSeFile.FormatError.self) { try DfuSeFile(bytes: DFUFileSuffix(dfuVersion: 0x011A).appended(to: body)) }
    }
}
