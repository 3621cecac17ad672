import Testing
import CommandReporting
@testable import keyline_sim

/// Issue 12: `sim serve --faults "1-2.1@"` crashed on an index out of range.
@Suite struct SimulatorFaultSpecs {
    @Test(arguments: ["1-2.1@", "@", "1-2.1@=", "=5", ",1-1@,"])
    func malformedFaultItemsAreUsageErrors(_ spec: String) throws {
        #expect(throws: CommandFailure.self) { try SimulatorFleetSpec.parseFaults(spec) }
    }

    @Test func wellFormedItemsStillParse() throws {
        let plan = try SimulatorFleetSpec.parseFaults("1-1.3@stall=20,1-2.1@disconnect-after=100")
        #expect(plan.byPort.count == 2)
    }
}
