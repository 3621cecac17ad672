import Foundation
import Registry
import Testing
import TestSupport

@Suite("Station heartbeat (station_status)", .serialized)
struct StationStatusTests {
    @Test("a station login writes its own heartbeat only, with the database's time; an auditor reads, never writes")
    func ownStationOnly() async throws {
        try await DashboardDatabase.with { database in
            let job = try await FloorFixture.job(database.admin, station: "line-a")
            let other = try await FloorFixture.job(database.admin, station: "line-b")
            let station = RegistryDatabase(client: try await PostgresConnection.connect(try await database.login("station", station: "line-a")))
            let ports = [StationPort(path: "1-1.1", name: "slot 1"), StationPort(path: "1-1.2")]
            try await station.writeStationStatus(station: "line-a", jobID: job.id, storeState: .ok, storeDetail: nil, ports: ports)
            try await station.writeStationStatus(station: "line-a", jobID: job.id, storeState: .holding,
                                                 storeDetail: "S3 answered 503", ports: ports)
            await #expect(throws: RegistryError.self) {
                try await station.writeStationStatus(station: "line-b", jobID: nil, storeState: .ok, storeDetail: nil, ports: [])
            }
            await #expect(throws: RegistryError.self) {
                try await station.writeStationStatus(station: "line-a", jobID: other.id, storeState: .ok, storeDetail: nil, ports: [])
            }
            let auditor = RegistryDatabase(client: try await PostgresConnection.connect(try await database.login("auditor")))
            let statuses = try await auditor.stationStatuses()
            #expect(statuses.count == 1)
            #expect(statuses.first?.station == "line-a")
            #expect(statuses.first?.jobID == job.id)
            #expect(statuses.first?.storeState == "holding")
            #expect(statuses.first?.storeDetail == "S3 answered 503")
            #expect(statuses.first?.ports == ports)
            #expect((statuses.first?.secondsSinceSeen ?? 99) < 60)
            await #expect(throws: RegistryError.self) {
                try await auditor.writeStationStatus(station: "line-a", jobID: nil, storeState: .ok, storeDetail: nil, ports: [])
            }
            let access = try await auditor.loginAccess()
            #expect(access.isAuditorOnly)
        }
    }
}
