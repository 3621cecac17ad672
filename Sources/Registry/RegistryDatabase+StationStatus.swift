import Foundation

/// A port of a station's jig as its heartbeat names it (the pipeline's `ports:` allow-list).
public struct StationPort: Sendable, Equatable, Codable {
    /// The port path as `keyline devices` prints it (`1-1.2`).
    public var path: String
    /// The operator's nickname for it (`slot 1`), if any.
    public var name: String?

    public init(path: String, name: String? = nil) {
        self.path = path
        self.name = name
    }
}

/// What a station's runner says about itself every few seconds (table `station_status`, 0014).
public struct StationStatus: Sendable, Equatable {
    public enum StoreState: String, Sendable, Codable {
        /// The escrow store answers.
        case ok
        /// A store outage holds new devices (Provisioning's StoreOutage) until it returns.
        case holding
    }

    public var station: String
    /// The job the runner runs (nil between jobs).
    public var jobID: Int64?
    /// The database's clock at the last heartbeat.
    public var seenAt: Date
    /// Seconds from `seenAt` to the database's clock now, when read.
    public var secondsSinceSeen: Double
    /// The store state as the runner wrote it ('ok', 'holding', or a newer runner's word).
    public var storeState: String
    public var storeDetail: String?
    public var ports: [StationPort]
}

extension RegistryDatabase {
    /// Writes this station's heartbeat (insert or replace). The database sets `seen_at` and
    /// refuses a station login writing as another station or naming another station's job.
    public func writeStationStatus(station: String, jobID: Int64?, storeState: StationStatus.StoreState,
                                   storeDetail: String?, ports: [StationPort]) async throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let portsJSON = String(decoding: try encoder.encode(ports), as: UTF8.self)
        try await run("write station_status") { transaction in
            try transaction.execute("""
                INSERT INTO station_status (station, job_id, store_state, store_detail, ports)
                VALUES ($1, $2, $3, $4, $5::jsonb)
                ON CONFLICT (station) DO UPDATE SET job_id = EXCLUDED.job_id, seen_at = now(),
                    store_state = EXCLUDED.store_state, store_detail = EXCLUDED.store_detail, ports = EXCLUDED.ports
                """, [station, jobID, storeState.rawValue, storeDetail, portsJSON])
        }
    }

    /// Every station's last heartbeat, by station name.
    public func stationStatuses() async throws -> [StationStatus] {
        try await run("read station_status") { transaction in
            try transaction.query("""
                SELECT station, job_id, seen_at, extract(epoch FROM now() - seen_at)::float8 AS age,
                       store_state, store_detail, ports::text AS ports
                FROM station_status ORDER BY station
                """).map(Self.stationStatus)
        }
    }

    static func stationStatus(_ row: PostgresRow) throws -> StationStatus {
        let portsText: String = try row.decode("ports")
        // The database checks it is an array; an element another writer shaped differently is skipped.
        let elements = (try? JSONSerialization.jsonObject(with: Data(portsText.utf8))) as? [Any] ?? []
        let ports = elements.compactMap { element -> StationPort? in
            guard let object = element as? [String: Any], let path = object["path"] as? String else { return nil }
            return StationPort(path: path, name: object["name"] as? String)
        }
        return StationStatus(station: try row.decode("station"), jobID: try row.decode("job_id"),
                             seenAt: try row.decode("seen_at"), secondsSinceSeen: try row.decode("age"),
                             storeState: try row.decode("store_state"), storeDetail: try row.decode("store_detail"),
                             ports: ports)
    }
}
