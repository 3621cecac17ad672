import Age
import DeviceKeys
import Escrow
import Registry
import RMABench
import Testing
import TestSupport

/// The bench's escrow through the one write-ahead protocol keeps its order of checks: the object
/// key is checked before anything is sealed, written or recorded.
@Suite struct BenchEscrowTests {
    @Test("a product that is no store path is refused as an invalid object key, with nothing written")
    func invalidProductIsAnInvalidKey() async throws {
        try await TestPostgres.withMigratedDatabase { registry in
            let scratch = try ScratchDirectory()
            let store = DirectoryEscrowStore(root: scratch.file("store"))
            let escrow = BenchEscrow(registry: registry, store: store, recipients: [X25519Identity.generate().recipient],
                                     station: "bench")
            let key = try DevicePrivateKey.generate(.ec)
            await #expect(throws: EscrowStoreError.self) {
                _ = try await escrow.escrow(key, deviceID: "e00fce68aaaaaaaaaaaaaaaa", platform: "boron", product: "x y",
                                            label: "test", reason: "test")
            }
            #expect(try await store.contains(EscrowObjectKey(product: "p", deviceID: "e00fce68aaaaaaaaaaaaaaaa",
                                                             publicKeySHA256: key.publicKey.fingerprint)) == false)
        }
    }
}
