import Foundation
import Registry
import Testing

/// One rule for the name provision, restore and the `keys` bench commands record.
@Suite struct StationNameTests {
    @Test func givenThenEnvironmentThenHostName() {
        let host = StationName.hostName()
        #expect(!host.isEmpty)
        var system = utsname()
        #expect(uname(&system) == 0)
        #expect(host == withUnsafeBytes(of: system.nodename) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) })
        #expect(StationName.resolve("rma-2", environment: ["KEYLINE_STATION": "line-1"]) == "rma-2")
        #expect(StationName.resolve(nil, environment: ["KEYLINE_STATION": "line-1"]) == "line-1")
        // An empty KEYLINE_STATION (a blanked variable in a unit file) is no name.
        #expect(StationName.resolve(nil, environment: ["KEYLINE_STATION": ""]) == host)
        #expect(StationName.resolve(nil, environment: [:]) == host)
    }
}
