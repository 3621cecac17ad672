import Synchronization
import Testing
@testable import DeviceKeys

// Serialized: the release observer is one global, set and cleared by each case.
@Suite("Private key bytes are cleared", .serialized)
struct SecretBytesTests {
    @Test("moving bytes in clears the source array; reads and comparisons see the original")
    func movingIn() {
        var bytes: [UInt8] = [1, 2, 3, 4, 5]
        let secret = SecretBytes(clearing: &bytes)
        #expect(bytes == [0, 0, 0, 0, 0])
        #expect(secret.count == 5)
        #expect(secret.copy() == [1, 2, 3, 4, 5])
        #expect(secret.equals([1, 2, 3, 4, 5]))
        #expect(!secret.equals([1, 2, 3, 4, 6]))
        #expect(!secret.equals([1, 2, 3, 4]))
    }

    @Test("a device key's buffer is all zeros when it is freed", arguments: KeyAlgorithm.allCases)
    func keyBufferClearedOnRelease(algorithm: KeyAlgorithm) throws {
        let seen = Mutex<(buffers: Int, dirty: Int)>((0, 0))
        SecretBytes.releaseObserver.withLock { observer in
            observer = { bytes in seen.withLock { $0.buffers += 1; if bytes.contains(where: { $0 != 0 }) { $0.dirty += 1 } } }
        }
        defer { SecretBytes.releaseObserver.withLock { $0 = nil } }
        do {
            let key = try DevicePrivateKey.generate(algorithm)
            #expect(key.derCount > 0)
            var image = key.slotImage(size: 612)
            #expect(image.count == 612 && image.suffix(612 - key.derCount).allSatisfy { $0 == 0xFF })
            #expect(key.secret.equals(image.prefix(key.derCount)))
            SecretBytes.clear(&image)
            #expect(image.allSatisfy { $0 == 0 })
        }
        let result = seen.withLock { $0 }
        #expect(result.buffers >= 1)
        #expect(result.dirty == 0)
    }
}
