import Foundation
import Registry
import Testing

/// `PostgresSnapshot.forEachBatch` fetches the next batch while the body works on the current one:
/// every row still arrives once and in order, a body that queries the snapshot meanwhile is served
/// (its statement queues behind the fetch in flight), and a body that throws closes the cursor.
@Suite("Snapshot streaming") struct SnapshotStreamingTests {
    @Test("batches in order with the next fetched ahead; the body may query the snapshot; a throw closes the cursor")
    func prefetchedBatches() async throws {
        try await withTestDatabase(migrated: false) { database in
            let connection = try await database.connect()
            defer { Task { await connection.close() } }
            try await connection.withReadOnlySnapshot { snapshot in
                var seen: [Int] = []
                var sizes: [Int] = []
                try await snapshot.forEachBatch("SELECT g FROM generate_series(1, 1003) g ORDER BY g", batchSize: 100) { rows in
                    sizes.append(rows.count)
                    seen += try rows.map { try $0.decode(at: 0, as: Int.self) }
                    // A query of the body's own between batches, on the same connection.
                    let echo = try await snapshot.query("SELECT $1::int AS n", [String(seen.count)])
                    #expect(try echo.first?.decode("n", as: Int.self) == seen.count)
                }
                #expect(seen == Array(1...1003))
                #expect(sizes == Array(repeating: 100, count: 10) + [3])

                // Exactly a multiple of the batch size: the last fetch is empty and not passed on.
                var batches = 0
                try await snapshot.forEachBatch("SELECT g FROM generate_series(1, 200) g", batchSize: 100) { _ in batches += 1 }
                #expect(batches == 2)

                struct Stop: Error {}
                await #expect(throws: Stop.self) {
                    try await snapshot.forEachBatch("SELECT g FROM generate_series(1, 1000) g", batchSize: 10) { _ in throw Stop() }
                }
                let open = try await snapshot.query("SELECT name, statement FROM pg_cursors WHERE name <> ''")
                let names = try open.map { try $0.decode("name", as: String.self) + ": " + $0.decode("statement", as: String.self) }
                #expect(open.isEmpty, "\(names)")
            }
        }
    }
}
