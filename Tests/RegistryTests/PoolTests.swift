import Foundation
import Testing
@testable import Registry
import TestSupport

@Suite("Connection pool")
struct PoolTests {
    @Test("many tasks share at most `size` connections, and every transaction commits")
    func boundedSharing() async throws {
        try await withTestDatabase(migrated: false) { database in
            let pool = PostgresConnectionPool(settings: database.settings, size: 3)
            try await pool.execute("CREATE TABLE t (task integer PRIMARY KEY, pid integer NOT NULL)", [])
            let running = LockedBox((now: 0, most: 0))
            try await withThrowingTaskGroup(of: Void.self) { group in
                for task in 0..<12 {
                    group.addTask {
                        try await pool.transaction(isolation: .readCommitted) { transaction in
                            running.withValue { $0.now += 1; $0.most = max($0.most, $0.now) }
                            defer { running.withValue { $0.now -= 1 } }
                            try transaction.execute("SELECT pg_sleep(0.02)")
                            try transaction.execute("INSERT INTO t VALUES ($1, pg_backend_pid())", [task])
                        }
                    }
                }
                try await group.waitForAll()
            }
            let rows = try await pool.query("SELECT count(*) AS n, count(DISTINCT pid) AS pids FROM t", [])
            #expect(try rows[0].decode("n", as: Int.self) == 12)
            #expect(try rows[0].decode("pids", as: Int.self) <= 3)
            #expect(running.withValue { $0.most } <= 3)
            #expect(await pool.openConnections <= 3)
            await pool.close()
            await #expect(throws: PostgresError.self) { try await pool.query("SELECT 1", []) }
        }
    }

    @Test("the registry works over a pool, conflicts included")
    func registryOverPool() async throws {
        try await withTestDatabase { database in
            let registry = try await RegistryDatabase.connect(database.settings, connections: 4)
            #expect(registry.client is PostgresConnectionPool)
            let fixture = try await RegistryFixture.make(registry)
            let setup = try await database.registry()
            let device = randomDeviceID()
            let keys = [try await TestKey.random(using: setup.connection), try await TestKey.random(using: setup.connection)]
            let first = try await fixture.escrowed(deviceID: device, key: keys[0])
            // Another station's job with the same device and another key.
            let fixtureB = RegistryFixture(registry: registry, productID: fixture.productID,
                                           job: try await registry.createJob(productID: fixture.productID,
                                                                             station: "station-02", pipeline: "boron"))
            let second = try await fixtureB.escrowed(deviceID: device, key: keys[1])
            async let a = capture { try await registry.registerKey(fixture.registration(deviceID: device, key: keys[0], escrowObjectID: first.id)) }
            async let b = capture { try await registry.registerKey(fixtureB.registration(deviceID: device, key: keys[1], escrowObjectID: second.id)) }
            let results = await [a, b]
            #expect(results.filter { (try? $0.get()) != nil }.count == 1)
            for case .failure(let error) in results {
                guard case RegistryError.activeKeyConflict(_, device, _, _) = error else {
                    Issue.record("unexpected \(error)")
                    continue
                }
            }
        }
    }

    @Test("a pool that cannot connect reports it and gives the slot back")
    func unreachable() async throws {
        let pool = PostgresConnectionPool(
            settings: ConnectionSettings(connectionString: "host=/nonexistent-socket-folder dbname=x"), size: 1)
        for _ in 0..<2 {
            await #expect {
                try await pool.query("SELECT 1", [])
            } throws: { error in
                (error as? PostgresError)?.kind == .connectionFailed
            }
        }
        #expect(await pool.openConnections == 0)
    }

    @Test("tasks waiting for a slot are woken when connecting fails, and fail too instead of waiting forever")
    func unreachableConcurrent() async throws {
        let pool = PostgresConnectionPool(
            settings: ConnectionSettings(connectionString: "host=/nonexistent-socket-folder dbname=x"), size: 1)
        let outcomes = LockedBox<[Bool]>([])
        let tasks = (0..<4).map { _ in
            Task {
                let failed: Bool
                do {
                    _ = try await pool.query("SELECT 1", [])
                    failed = false
                } catch {
                    failed = (error as? PostgresError)?.kind == .connectionFailed
                }
                outcomes.withValue { $0.append(failed) }
            }
        }
        // A waiter that is never woken never returns, and cancelling does not wake it either: poll
        // with an overall limit (generous: each attempt fails at once) so a regression fails here.
        let deadline = Date().addingTimeInterval(60)
        while outcomes.withValue({ $0.count }) < tasks.count, Date() < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        let finished = outcomes.withValue { $0 }
        #expect(finished.count == tasks.count, "\(tasks.count - finished.count) of \(tasks.count) queries still waiting after 60 s")
        #expect(finished.allSatisfy { $0 })
        #expect(await pool.openConnections == 0)
        if finished.count == tasks.count { for task in tasks { await task.value } }
    }

    @Test("a task cancelled while it waits for a connection stops waiting at once; the pool keeps serving")
    func cancelledWaiter() async throws {
        try await withTestDatabase(migrated: false) { database in
            let pool = PostgresConnectionPool(settings: database.settings, size: 1)
            let release = LockedBox(false)
            // The only connection, held until released.
            let holder = Task {
                try await pool.withConnection { _ in
                    try await waitUntil(poll: .milliseconds(10), "the test to release the connection") { release.withValue({ $0 }) }
                }
            }
            try await waitUntil(poll: .milliseconds(5), "await pool.openConnections > 0") { await pool.openConnections > 0 }
            let outcome = LockedBox<String?>(nil)
            let waiter = Task {
                do {
                    _ = try await pool.query("SELECT 1", [])
                    outcome.withValue { $0 = "connection" }
                } catch is CancellationError {
                    outcome.withValue { $0 = "cancelled" }
                } catch {
                    outcome.withValue { $0 = "\(error)" }
                }
            }
            try await Task.sleep(for: .milliseconds(100))  // let it queue
            waiter.cancel()
            // Without cancellation support the waiter sleeps until the holder lets go: a deadline
            // (generous, it is a hang check, not a timing) turns that into a failure, not a hang.
            let deadline = Date().addingTimeInterval(30)
            while outcome.withValue({ $0 }) == nil, Date() < deadline { try await Task.sleep(for: .milliseconds(10)) }
            #expect(outcome.withValue { $0 } == "cancelled")
            release.withValue { $0 = true }
            try await holder.value
            await waiter.value
            // The cancelled waiter left no stale place in the queue: the next query is served.
            #expect(try await pool.query("SELECT 1 AS one", [])[0].decode("one", as: Int.self) == 1)
            await pool.close()
        }
    }
}
