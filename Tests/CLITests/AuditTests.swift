import Escrow
import Age
import EscrowS3
import Foundation
import Registry
import Testing
import TestSupport

/// `keyline audit` on a real simulated batch: a clean fleet is clean; then each finding is built
/// on purpose in the database and the escrow store and reported with its severity and exit code.
@Suite("keyline audit", .serialized)
struct AuditTests {
    @Test("a clean fleet is clean; each finding is reported with its severity; errors exit 2")
    func findings() async throws {
        let line = try await ProvisionLine(seed: 31) { fleet in
            for index in 1...4 { try fleet.add(.photon, at: ProvisionTests.port(1, index), mode: .dfu) }
        }
        defer { Task { await line.stop() } }
        try await waitUntil(poll: .milliseconds(10), "line.fleet.attachedDevices().count >= 4") { line.fleet.attachedDevices().count >= 4 }
        let pipeline = ProvisionLine.pipeline("photon-factory.yaml")
        let product = try ProvisionLine.productID(pipeline)
        try await line.keyline(["provision", pipeline, "--json"]).requireSuccess()
        let auditor = try await line.auditorEnvironment()
        defer { Task { try? await DatabaseCLITests.psql("DROP ROLE IF EXISTS \(auditor.role)") } }
        let full = ["audit", "--product", product, "--check-store", "--decrypt", "--identity", line.identity.path]

        // Clean, as the read-only auditor: no finding, exit 0, no warning about rights.
        let clean = try await line.keyline(full + ["--format", "json"], environment: auditor.environment)
        #expect(clean.status == 0, "\(clean.stderr)\n\(clean.stdout)")
        let cleanJSON = try AuditTests.document(clean)
        #expect((cleanJSON["registrations"] as? [[String: Any]])?.count == 4)
        #expect((cleanJSON["findings"] as? [[String: Any]])?.isEmpty == true, "\(clean.stdout)")
        #expect((cleanJSON["login"] as? [String: Any])?["read_only"] as? Bool == true)
        #expect(!clean.stderr.contains("warning"), "\(clean.stderr)")
        // The owner login may write: said on stderr, the audit still runs.
        let asOwner = try await line.keyline(["audit", "--product", product])
        #expect(asOwner.status == 0)
        #expect(asOwner.stderr.contains("warning: the login"), "\(asOwner.stderr)")
        #expect(asOwner.stdout.contains("4 registered keys"))

        let keys = try await line.sql("""
            SELECT device_id || ' ' || fingerprint || ' ' || escrow_object_id FROM key_registrations ORDER BY device_id
            """).split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        #expect(keys.count == 4)
        let (one, two, three, four) = (keys[0], keys[1], keys[2], keys[3])
        func objectPath(_ key: [String]) -> URL { line.store.appendingPathComponent("\(product)/\(key[0])/\(key[1]).age") }

        // A warning alone (an orphan in the store) does not fail the audit.
        let orphan = line.store.appendingPathComponent("\(product)/dddddddddddddddddddddd04/\(String(repeating: "e", count: 64)).age")
        try FileManager.default.createDirectory(at: orphan.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data("not a backup".utf8).write(to: orphan)
        let warned = try await line.keyline(full + ["--format", "json"], environment: auditor.environment)
        #expect(warned.status == 0, "\(warned.stderr)")
        #expect(try AuditTests.findings(warned).map(\.code) == ["orphan_object"])

        // Every other finding, on purpose.
        let mismatchKey = try await line.sql("SELECT encode(sha256(decode(md5('mismatch'), 'hex')), 'hex')")
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let mismatchDevice = "cccccccccccccccccccccc03"
        let copied = line.store.appendingPathComponent("\(product)/\(mismatchDevice)/\(mismatchKey).age")
        try FileManager.default.createDirectory(at: copied.deletingLastPathComponent(), withIntermediateDirectories: true)
        let backupOfOne = try Data(contentsOf: objectPath(one))
        try backupOfOne.write(to: copied)
        try await line.sql("""
            SET session_replication_role = replica;
            INSERT INTO key_registrations (product_id, device_id, algorithm, spki_der, fingerprint, escrow_object_id, station)
                SELECT '\(product)', 'aaaaaaaaaaaaaaaaaaaaaa01', 'ec', b, encode(sha256(b), 'hex'), 999999, 'x'
                FROM (SELECT decode(md5('no escrow'), 'hex') AS b) k;
            SET session_replication_role = origin;
            DROP INDEX key_registrations_one_active_per_device;
            WITH k AS (SELECT decode(md5('second key'), 'hex') AS b),
                 e AS (INSERT INTO escrow_objects (product_id, device_id, public_key_sha256, store_uri, object_key,
                                                   ciphertext_sha256, size_bytes, recipients, station)
                       SELECT '\(product)', '\(three[0])', encode(sha256(b), 'hex'), 'file:///elsewhere',
                              '\(product)/\(three[0])/' || encode(sha256(b), 'hex') || '.age', repeat('0', 64), 1,
                              ARRAY['age1x'], 'x' FROM k RETURNING id, public_key_sha256)
            INSERT INTO key_registrations (product_id, device_id, algorithm, spki_der, fingerprint, escrow_object_id, station)
                SELECT '\(product)', '\(three[0])', 'ec', k.b, e.public_key_sha256, e.id, 'x' FROM k, e;
            INSERT INTO escrow_objects (product_id, device_id, public_key_sha256, store_uri, object_key, ciphertext_sha256,
                                        size_bytes, recipients, station)
                VALUES ('\(product)', 'bbbbbbbbbbbbbbbbbbbbbb02', '\(two[1])', 'file:///elsewhere', 'copy', repeat('0', 64), 1,
                        ARRAY['age1x'], 'x');
            WITH k AS (SELECT decode(md5('mismatch'), 'hex') AS b),
                 e AS (INSERT INTO escrow_objects (product_id, device_id, public_key_sha256, store_uri, object_key,
                                                   ciphertext_sha256, size_bytes, recipients, station)
                       SELECT '\(product)', '\(mismatchDevice)', encode(sha256(b), 'hex'), '\(DirectoryEscrowStore(root: line.store).storeURI)',
                              '\(product)/\(mismatchDevice)/\(mismatchKey).age', '\(Age.sha256(Array(backupOfOne)))',
                              \(backupOfOne.count), ARRAY['age1x'], 'x' FROM k RETURNING id, public_key_sha256)
            INSERT INTO key_registrations (product_id, device_id, algorithm, spki_der, fingerprint, escrow_object_id, station)
                SELECT '\(product)', '\(mismatchDevice)', 'ec', k.b, e.public_key_sha256, e.id, 'x' FROM k, e;
            INSERT INTO restorations (registration_id, product_id, device_id, escrow_object_id, station, outcome)
                SELECT id, product_id, device_id, escrow_object_id, 'rma-bench', 'restored' FROM key_registrations
                WHERE device_id = '\(four[0])';
            UPDATE key_registrations SET status = 'superseded', status_reason = 'RMA 17' WHERE device_id = '\(four[0])';
            INSERT INTO jobs (product_id, station, pipeline) VALUES ('\(product)', 'x', 'stopped.yaml');
            INSERT INTO job_devices (job_id, device_id, state, station) SELECT max(id), 'eeeeeeeeeeeeeeeeeeeeee05', 'detected', 'x' FROM jobs;
            UPDATE job_devices SET state = 'dfu' WHERE device_id = 'eeeeeeeeeeeeeeeeeeeeee05';
            UPDATE job_devices SET state = 'flashed' WHERE device_id = 'eeeeeeeeeeeeeeeeeeeeee05';
            UPDATE job_devices SET state = 'server_key' WHERE device_id = 'eeeeeeeeeeeeeeeeeeeeee05';
            UPDATE job_devices SET state = 'key_ready', key_fingerprint = repeat('ab', 32) WHERE device_id = 'eeeeeeeeeeeeeeeeeeeeee05';
            """)
        // The store: one backup damaged, one gone.
        var damaged = try Data(contentsOf: objectPath(one))
        damaged[damaged.count - 1] ^= 0xff
        try damaged.write(to: objectPath(one))
        try FileManager.default.removeItem(at: objectPath(two))

        let broken = try await line.keyline(full + ["--format", "json"], environment: auditor.environment)
        #expect(broken.status == 2, "\(broken.stderr)\n\(broken.stdout)")
        let found = try AuditTests.findings(broken)
        let expected: [String: AuditSeverity] = [
            "no_escrow_object": .error, "several_active_keys": .error, "public_key_on_two_devices": .error,
            "escrow_object_modified": .error, "escrow_object_missing": .error, "backup_does_not_decrypt": .error,
            "backup_key_mismatch": .error, "orphan_object": .warning, "key_never_registered": .warning,
            "key_superseded": .info, "restored": .info, "objects_in_other_store": .error,
        ]
        for (code, severity) in expected {
            let matches = found.filter { $0.code == code }
            #expect(!matches.isEmpty, "no \(code) in \(found.map(\.code))")
            #expect(matches.allSatisfy { $0.severity == severity }, "\(code): \(matches)")
        }
        #expect(Set(found.map(\.code)) == Set(expected.keys), "\(found.map(\.code))")
        #expect(found.first { $0.code == "escrow_object_missing" }?.deviceID == two[0])
        #expect(found.first { $0.code == "escrow_object_modified" }?.deviceID == one[0])
        #expect(found.first { $0.code == "backup_key_mismatch" }?.deviceID == mismatchDevice)
        #expect(found.first { $0.code == "several_active_keys" }?.deviceID == three[0])
        #expect(found.first { $0.code == "key_never_registered" }?.deviceID == "eeeeeeeeeeeeeeeeeeeeee05")
        #expect(found.first { $0.code == "orphan_object" }?.objectKey == "\(product)/dddddddddddddddddddddd04/\(String(repeating: "e", count: 64)).age")
        let summary = try #require(try AuditTests.document(broken)["summary"] as? [String: Any])
        #expect(summary["registrations"] as? Int == 7)

        // CSV: the same registrations and findings, parsed back.
        let csv = try await line.keyline(full + ["--format", "csv"], environment: auditor.environment)
        #expect(csv.status == 2)
        let rows = CSV.parse(csv.stdout)
        #expect(rows.first == ["record", "severity", "code", "product", "device_id", "platform", "algorithm", "fingerprint",
                               "registered_at", "job", "station", "status", "escrow_object", "message"])
        #expect(rows.dropFirst().allSatisfy { $0.count == 14 })
        #expect(rows.filter { $0.first == "registration" }.count == 7)
        #expect(rows.filter { $0.first == "finding" }.map { $0[2] }.sorted() == found.map(\.code).sorted())
        #expect(rows.contains { $0.first == "registration" && $0[4] == four[0] && $0[11] == "superseded" && $0[5] == "photon" })

        // Scope: --job lists that job's keys only; the table is for people.
        let table = try await line.keyline(["audit", "--job", "1"], environment: auditor.environment)
        #expect(table.stdout.contains("FINDINGS"))
        #expect(table.stdout.contains("ERROR"))
        #expect(table.status == 2)

        // Progress on a terminal only: none on the pipes above, a line per pass on a pty.
        #expect(!broken.stderr.contains("checking"), "\(broken.stderr)")
        let command = ([Subprocess.keyline] + full + ["--format", "csv"]).map { "'\($0)'" }.joined(separator: " ") + " >/dev/null"
        let pty = try await ChildProcess.run("script", ["-q", "-e", "-c", command, "/dev/null"],
                                             environment: line.environment.merging(auditor.environment) { $1 }, timeout: .seconds(300))
        #expect(pty.status == 2, "\(pty.stdout)")
        #expect(pty.stdout.contains("checking \(line.store.path)"), "\(pty.stdout)")
        #expect(pty.stdout.contains("looking for orphans in \(line.store.path)"), "\(pty.stdout)")

        // The findings' temporary file cannot be written (a full disk; here a file size limit,
        // which fails the same write(2) with EFBIG, with SIGXFSZ ignored so the write returns):
        // a clear error and exit 74, not a short audit that looks clean.
        let limited = try await ChildProcess.run("/bin/sh", ["-c", "trap '' XFSZ; ulimit -f 1; exec \"$0\" \"$@\"", Subprocess.keyline]
                                                 + full + ["--format", "csv"],
                                                 environment: line.environment.merging(auditor.environment) { $1 }, timeout: .seconds(300))
        #expect(limited.status == 74, "\(limited.stderr)")
        #expect(limited.stderr.contains("cannot write the audit's temporary findings file"), "\(limited.stderr)")
        #expect(!CSV.parse(limited.stdout).contains { $0.first == "finding" })

        // A registry whose schema is older than this keyline is refused with the fix (exit 78).
        try await line.sql("DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations)")
        let behind = try await line.keyline(["audit", "--product", product], environment: auditor.environment)
        #expect(behind.status == 78, "\(behind.stderr)")
        #expect(behind.stderr.contains("keyline db migrate"), "\(behind.stderr)")
        #expect(behind.stdout.isEmpty)
    }

    @Test("--check-store over an S3 store: modified, missing and orphan objects found through ListObjectsV2")
    func s3Store() async throws {
        let endpoint = try EscrowS3CLITests.endpoint()
        let line = try await ProvisionLine(seed: 33) { _ in }
        defer { Task { await line.stop() } }
        let aws = ["AWS_ACCESS_KEY_ID": "keyline-test", "AWS_SECRET_ACCESS_KEY": "keyline-test-secret-never-printed",
                   "AWS_SESSION_TOKEN": "", "AWS_PROFILE": "", "AWS_REGION": "us-east-1",
                   "AWS_ENDPOINT_URL": endpoint, "AWS_ENDPOINT_URL_S3": endpoint]
        let bucket = "kl-audit-" + UUID().uuidString.prefix(12).lowercased()
        try await S3EscrowStore(uri: "s3://\(bucket)", environment: aws).createBucket()
        let location = "s3://\(bucket)/line-1?endpoint=\(endpoint)"
        let store = try S3EscrowStore(uri: location, environment: aws)
        func key(_ n: Int) throws -> EscrowObjectKey {
            try EscrowObjectKey(product: "acme-audit", deviceID: String(format: "e00fce68%016x", n),
                                publicKeySHA256: Age.sha256(Array("key-\(n)".utf8)))
        }
        // 1 intact, 2 modified (recorded with another hash), 3 an orphan (no record), 4 missing (no object).
        var rows: [String] = []
        for n in 1...4 {
            let bytes = Array("ciphertext \(n)".utf8)
            if n != 4 { _ = try await store.put(bytes, at: try key(n)) }
            guard n != 3 else { continue }
            let recorded = n == 2 ? String(repeating: "0", count: 64) : Age.sha256(bytes)
            let k = try key(n)
            rows.append("('acme-audit', '\(k.deviceID)', '\(k.publicKeySHA256)', '\(store.storeURI)', '\(k.path)', '\(recorded)', \(bytes.count), ARRAY['age1x'], 'x')")
        }
        try await line.sql("""
            INSERT INTO products (id, name) VALUES ('acme-audit', 'Audit');
            INSERT INTO escrow_objects (product_id, device_id, public_key_sha256, store_uri, object_key, ciphertext_sha256,
                                        size_bytes, recipients, station) VALUES \(rows.joined(separator: ", "));
            """)
        let result = try await line.keyline(["audit", "--product", "acme-audit", "--check-store", "--store", location,
                                             "--format", "json"], environment: aws)
        #expect(result.status == 2, "\(result.stderr)\n\(result.stdout)")
        let found = try AuditTests.findings(result)
        #expect(found.map(\.code).sorted() == ["escrow_object_missing", "escrow_object_modified", "orphan_object"], "\(found)")
        #expect(found.first { $0.code == "escrow_object_modified" }?.objectKey == (try key(2)).path)
        #expect(found.first { $0.code == "orphan_object" }?.objectKey == (try key(3)).path)
        #expect(found.first { $0.code == "escrow_object_missing" }?.objectKey == (try key(4)).path)
        #expect(!(result.stdout + result.stderr).contains("keyline-test-secret"))
    }

    static func document(_ result: ChildProcess.Result) throws -> [String: Any] {
        guard let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any] else {
            throw CLITestFailure("not a JSON object: \(result.stdout)")
        }
        return object
    }

    static func findings(_ result: ChildProcess.Result) throws -> [AuditFinding] {
        let array = try document(result)["findings"] ?? []
        return try JSONDecoder().decode([AuditFinding].self, from: JSONSerialization.data(withJSONObject: array))
    }
}

/// RFC 4180 CSV, enough to read keyline's output back.
enum CSV {
    static func parse(_ text: String) -> [[String]] {
        var rows: [[String]] = []
        var row: [String] = []
        var field = ""
        var quoted = false
        var characters = Array(text)[...]
        while let character = characters.popFirst() {
            if quoted {
                if character == "\"" {
                    if characters.first == "\"" { field.append("\""); characters.removeFirst() } else { quoted = false }
                } else { field.append(character) }
            } else if character == "\"" { quoted = true
            } else if character == "," { row.append(field); field = ""
            } else if character == "\n" { row.append(field); rows.append(row); row = []; field = ""
            } else { field.append(character) }
        }
        if !field.isEmpty || !row.isEmpty { row.append(field); rows.append(row) }
        return rows
    }
}

extension ProvisionLine {
    /// Runs SQL in the line's database as its owner; the output unaligned, tuples only.
    @discardableResult
    func sql(_ statement: String) async throws -> String {
        var arguments = ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", statement]
        if let url = environment["DATABASE_URL"], !url.isEmpty { arguments.insert(url, at: 0) }
        let result = try await ChildProcess.run("psql", arguments, environment: environment, timeout: .seconds(120))
        guard result.status == 0 else { throw CLITestFailure("psql failed: \(statement)\n\(result.stderr)") }
        return result.stdout
    }

    /// A new login that is only a member of keyline_auditor, and the environment that uses it.
    func auditorEnvironment() async throws -> (role: String, environment: [String: String]) {
        let role = "kl_auditor_" + String((0..<8).map { _ in "abcdefghijklmnopqrstuvwxyz".randomElement()! })
        try await DatabaseCLITests.psql("CREATE ROLE \(role) LOGIN IN ROLE keyline_auditor")
        return (role, ["PGUSER": role])
    }

    @discardableResult
    func keyline(_ arguments: [String], environment extra: [String: String]) async throws -> ChildProcess.Result {
        try await ChildProcess.run(Subprocess.keyline, arguments, environment: environment.merging(extra) { _, new in new },
                                   timeout: .seconds(300))
    }
}
