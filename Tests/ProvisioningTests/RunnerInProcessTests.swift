import Age
import DeviceBus
import Provisioning
import DeviceKeys
import Escrow
import Foundation
import Registry
import Simulator
import Testing
import TestSupport

/// The runner in-process, over a simulated bus, a real PostgreSQL database and an escrow store
/// that fails on purpose: the retry paths a SIGKILL test cannot reach.
@Suite("Provisioning runner, in-process", .serialized)
struct RunnerInProcessTests {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// A store that writes the object and then reports a failed directory fsync, `failures` times:
    /// the object is linked, the caller was told it failed.
    final class FailingAfterLinkStore: EscrowStore, @unchecked Sendable {
        let inner: DirectoryEscrowStore
        private let lock = NSLock()
        private var failures: Int
        private(set) var puts: [String] = []

        init(root: URL, failures: Int) {
            inner = DirectoryEscrowStore(root: root)
            self.failures = failures
        }

        var storeURI: String { inner.storeURI }

        func put(_ ciphertext: [UInt8], at key: EscrowObjectKey) async throws -> String {
            let digest = try await inner.put(ciphertext, at: key)
            let fail = lock.withLock { () -> Bool in
                puts.append(digest)
                guard failures > 0 else { return false }
                failures -= 1
                return true
            }
            if fail { throw EscrowStoreError.io(operation: "fsync directory", path: key.path, errno: EIO) }
            return digest
        }

        func get(_ key: EscrowObjectKey, expectedSHA256: String) async throws -> [UInt8] {
            try await inner.get(key, expectedSHA256: expectedSHA256)
        }
        func contains(_ key: EscrowObjectKey) async throws -> Bool { try await inner.contains(key) }
        func adopt(_ key: EscrowObjectKey, expectedSHA256: String) async throws -> Bool {
            try await inner.adopt(key, expectedSHA256: expectedSHA256)
        }
        func sweepStaleTemporaryFiles(olderThan age: Duration) async throws -> Int {
            try await inner.sweepStaleTemporaryFiles(olderThan: age)
        }
        var displayName: String { inner.displayName }
        func location(of key: EscrowObjectKey) -> String { inner.location(of: key) }
        func sha256s(ofObjectsAt objectKeys: [String]) async -> [Result<String?, any Error>] {
            await inner.sha256s(ofObjectsAt: objectKeys)
        }
        func contents(ofObjectsAt objectKeys: [String]) async -> [Result<[UInt8]?, any Error>] {
            await inner.contents(ofObjectsAt: objectKeys)
        }
        func objectPages(under product: String?) -> AsyncThrowingStream<[String], any Error> {
            inner.objectPages(under: product)
        }
    }

    static func pipeline(in scratch: ScratchDirectory, identity: X25519Identity) throws -> PipelineDefinition {
        try scratch.write("photon-user.bin", SyntheticFirmware.make(platform: .photon, function: .userPart, index: 1, size: nil))
        try scratch.write("recipients.txt", Array((identity.recipient.description + "\n").utf8))
        let yaml = """
            name: in-process
            product: {id: inproc, name: In-process test}
            platform: photon
            firmware: [photon-user.bin]
            server: {key: particle}
            key_mode: host
            escrow: {recipients: recipients.txt, store: store}
            concurrency: 4
            retries: {attempts: 3, initial_backoff: 10ms, max_backoff: 50ms}
            station: in-process
            """
        try scratch.write("pipeline.yaml", Array(yaml.utf8))
        return try PipelineLoader.load(path: scratch.path("pipeline.yaml"), environment: [:], overrides: .none)
    }

    @Test("a store write that failed after the object was linked is retried with the same bytes, and commits",
          .timeLimit(.minutes(2)))
    func escrowRetryAfterLinkedObject() async throws {
        try await TestPostgres.withMigratedDatabase { registry in
            let scratch = try ScratchDirectory(label: "runner")
            let identity = X25519Identity.generate()
            let definition = try Self.pipeline(in: scratch, identity: identity)
            let fleet = try SimulatedFleet(timeScale: 0, seed: 41)
            for index in 1...2 { try fleet.add(.photon, at: USBPortPath(bus: 1, ports: [1, UInt8(index)]), mode: .dfu) }
            let store = FailingAfterLinkStore(root: scratch.file("store"), failures: 2)
            let runner = ProvisioningRunner(definition: definition, registry: registry, store: store, bus: fleet,
                                            options: ProvisioningOptions(reenumerationTimeout: .seconds(5)),
                                            stop: StopSignal(), events: { _ in })
            let summary = try await runner.run()
            #expect(summary.devices.map(\.outcome) == [.done, .done], "\(summary.devices.map { $0.reason ?? "" })")
            // Each device's retry wrote the very bytes of its first attempt: one hash per device.
            #expect(Set(store.puts).count == 2, "\(store.puts)")
            // Every try is recorded for `keyline report`: the two failed puts, then each device's escrow.
            let escrowSteps = try await registry.steps(jobID: summary.jobID).filter { $0.step == "escrow" }
            #expect(escrowSteps.filter { $0.outcome == .failed }.count == 2, "\(escrowSteps)")
            #expect(escrowSteps.filter { $0.outcome == .done }.count == 2, "\(escrowSteps)")
            for audited in try await registry.registrations(productID: "inproc") {
                let key = try EscrowObjectKey(product: "inproc", deviceID: audited.registration.deviceID,
                                              publicKeySHA256: audited.registration.fingerprint)
                let bytes = try await store.get(key, expectedSHA256: audited.escrowObject.ciphertextSHA256)
                let backup = try EscrowBackup.decrypt(bytes, identities: [identity])
                #expect(backup.privateKey.publicKey.fingerprint == audited.registration.fingerprint)
            }
        }
    }

    @Test("a device ID or port that is not well-formed names no log file")
    func hostileNamesNameNoLogFile() async throws {
        let scratch = try ScratchDirectory(label: "runner")
        let log = try JobLog(root: scratch.file("logs/deep"), jobID: 7)
        log.record(ProvisioningEvent(type: .note, jobID: 7, port: "1-1.1", deviceID: "../../escaped\u{1B}[2J", message: "x"))
        log.record(ProvisioningEvent(type: .note, jobID: 7, port: "../../port", deviceID: nil, message: "y"))
        log.record(ProvisioningEvent(type: .note, jobID: 7, port: "1-1.2", deviceID: "e00fce68a1b2c3d4e5f60718", message: "z"))
        await log.close()
        let names = try FileManager.default.contentsOfDirectory(atPath: log.directory.path).sorted()
        #expect(names == ["e00fce68a1b2c3d4e5f60718.log", "job.log", "port-1-1.1.log"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.file("logs").path) == ["deep"])
    }

    @Test("one process per job: a second lease on a running job is refused until the first is given up")
    func oneRunnerPerJob() async throws {
        try await TestPostgres.withMigratedDatabase { registry in
            _ = try await registry.createProduct(id: "lease", name: "Lease test")
            let job = try await registry.createJob(productID: "lease", station: "a", pipeline: "p")
            let first = try #require(try await registry.leaseJob(job.id))
            #expect(try await registry.leaseJob(job.id) == nil)
            let other = try await registry.createJob(productID: "lease", station: "b", pipeline: "p")
            let otherLease = try #require(try await registry.leaseJob(other.id))
            await first.release()
            let again = try #require(try await registry.leaseJob(job.id))
            await again.release()
            await otherLease.release()
        }
    }

    @Test("zero-length sleeps end at once: the timer never wakes before its waiter is registered",
          .timeLimit(.minutes(1)))
    func zeroBackoffNeverHangs() async {
        let stop = StopSignal()
        for _ in 0..<2000 { _ = await stop.sleep(for: .zero) }
        stop.requestStop()
        #expect(await stop.sleep(for: .seconds(3600)))
    }

    /// The runner's stop watcher sleeps until a stop in a loop and is cancelled when the run ends:
    /// a cancelled sleep that reported "no stop" sent that loop spinning on a cooperative thread
    /// after every in-process run (two of them starve a 2-core station's whole pool).
    @Test("a cancelled task's sleep ends at once and tells the caller to stop waiting", .timeLimit(.minutes(1)))
    func cancelledSleepSaysStop() async {
        let stop = StopSignal()
        let sleeper = Task { await stop.sleep(for: .seconds(3600)) }
        sleeper.cancel()
        #expect(await sleeper.value)
        let alreadyCancelled = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return await stop.sleep(for: .seconds(3600))
        }
        #expect(await alreadyCancelled.value)
        #expect(!stop.isStopRequested)
    }
}
