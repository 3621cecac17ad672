import Foundation
import Testing
import TestSupport
@testable import Age

/// The streaming API (`AgeByteSource` / `AgeByteSink`) gives the same bytes and the same errors
/// as the in-memory one, however the input is split into reads.
@Suite struct AgeStreamingTests {
    static let sizes = [0, 1, 65_535, 65_536, 65_537, 131_072, 200_000]

    @Test(arguments: sizes, [1, 4_093, 65_536, 1 << 20])
    func streamedEncryptionDecryptsBothWays(size: Int, readSize: Int) throws {
        let identity = X25519Identity.generate()
        let plaintext = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) }
        for armor in [false, true] {
            var source = ByteArraySource(plaintext, readSize: readSize)
            var sink = ByteArraySink()
            try Age.encrypt(from: &source, to: &sink, recipients: [identity.recipient], armor: armor)
            #expect(AgeArmor.isArmored(sink.bytes) == armor)
            #expect(try Age.decrypt(sink.bytes, identities: [identity]) == plaintext)

            var encrypted = ByteArraySource(sink.bytes, readSize: readSize)
            var output = ByteArraySink()
            try Age.decrypt(from: &encrypted, to: &output, identities: [identity])
            #expect(output.bytes == plaintext)
        }
    }

    @Test func armorWriterMatchesWholeFileArmor() {
        let data = (0..<1000).map { UInt8(truncatingIfNeeded: $0) }
        for split in [0, 1, 47, 48, 49, 500, 1000] {
            var writer = AgeArmor.Writer()
            let streamed = writer.encode(Array(data[..<split])) + writer.encode(Array(data[split...])) + writer.finish()
            #expect(streamed == AgeArmor.encode(data))
        }
    }

    /// Every conformance vector, read 1 KiB at a time: same result class, same released plaintext.
    @Test(arguments: AgeVector.allNames())
    func vectorStreamed(_ name: String) throws {
        let vector = try AgeVector(named: name)
        let identities: [any AgeIdentity] = try vector.identities.map { try X25519Identity($0) }
        var source = ByteArraySource(vector.file, readSize: 1024)
        var sink = ByteArraySink()
        var failure: AgeError?
        do {
            try Age.decrypt(from: &source, to: &sink, identities: identities.isEmpty ? [X25519Identity.generate()] : identities)
        } catch let error as AgeError {
            failure = error
        }
        var inMemoryFailure: AgeError?
        var inMemory: [UInt8] = []
        do {
            try Age.decrypt(vector.file, identities: identities.isEmpty ? [X25519Identity.generate()] : identities) { inMemory += $0 }
        } catch let error as AgeError {
            inMemoryFailure = error
        }
        #expect(failure?.category == inMemoryFailure?.category, "\(name): \(String(describing: failure))")
        #expect(sink.bytes == inMemory)
        if vector.expect == "success" || vector.expect == "payload failure" {
            #expect(sha256Hex(sink.bytes) == vector.payloadSHA256)
        }
    }

    @Test func truncationAndDamageMatchTheInMemoryErrors() throws {
        let identity = X25519Identity.generate()
        let file = try Age.encrypt((0..<(AgeStream.chunkSize + 500)).map { UInt8(truncatingIfNeeded: $0) }, to: [identity.recipient])
        let header = try AgeHeader.parse(file)
        let cuts = [0, 10, header.payloadOffset - 1, header.payloadOffset + 3, header.payloadOffset + 16,
                    header.payloadOffset + 16 + AgeStream.encryptedChunkSize, file.count - 1]
        var damaged: [[UInt8]] = cuts.map { Array(file[..<$0]) }
        for index in [5, header.payloadOffset - 2, header.payloadOffset + 20, file.count - 1] {
            var copy = file
            copy[index] ^= 0x20
            damaged.append(copy)
        }
        damaged.append(file + [0])
        for bytes in damaged {
            var source = ByteArraySource(bytes, readSize: 3_000)
            var sink = ByteArraySink()
            let streamed = #expect(throws: AgeError.self) { try Age.decrypt(from: &source, to: &sink, identities: [identity]) }
            let whole = #expect(throws: AgeError.self) { try Age.decrypt(bytes, identities: [identity]) }
            #expect(streamed == whole, "length \(bytes.count)")
        }
    }

    @Test func fileDescriptorsStream() throws {
        let scratch = try ScratchDirectory(label: "escrow")
        let identity = X25519Identity.generate()
        let plaintext = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 >> 3) }
        try Data(plaintext).write(to: scratch.file("plain"))
        let input = open(scratch.file("plain").path, O_RDONLY), output = open(scratch.file("cipher").path, O_WRONLY | O_CREAT, 0o600)
        var source = FileDescriptorSource(descriptor: input, path: "plain")
        var sink = FileDescriptorSink(descriptor: output, path: "cipher")
        try Age.encrypt(from: &source, to: &sink, recipients: [identity.recipient])
        close(input)
        close(output)
        #expect(try Age.decrypt(Array(Data(contentsOf: scratch.file("cipher"))), identities: [identity]) == plaintext)
        // Not the just-closed descriptor: in a test process running suites in parallel its number
        // is reused at once (seen: another test's non-blocking socket, EAGAIN). -1 is never valid.
        var closed = FileDescriptorSource(descriptor: -1, path: "plain")
        var ignored = ByteArraySink()
        #expect(throws: AgeError.io(operation: "read", path: "plain", errno: EBADF)) {
            try Age.decrypt(from: &closed, to: &ignored, identities: [identity])
        }
    }
}
