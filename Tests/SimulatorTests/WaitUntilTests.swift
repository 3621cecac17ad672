import Testing
import TestSupport

/// The polling helper every test waits with: a condition that never comes is a failure that
/// names what was awaited and where, not a hang.
@Suite struct WaitUntilTests {
    @Test func aConditionThatNeverHoldsFailsAtTheDeadlineWithAMessage() async throws {
        let start = ContinuousClock.now
        do {
            try await waitUntil(deadline: .milliseconds(200), "the impossible") { false }
            Issue.record("waitUntil returned although its condition never held")
        } catch let error as WaitTimedOut {
            #expect(error.description.contains("the impossible"), "\(error)")
            #expect(error.description.contains("WaitUntilTests.swift"), "\(error)")
        }
        #expect(ContinuousClock.now - start >= .milliseconds(200))
    }

    @Test func aConditionThatComesTrueReturns() async throws {
        var polls = 0
        try await waitUntil(deadline: .seconds(60), poll: .milliseconds(1)) {
            polls += 1
            return polls == 3
        }
        #expect(polls == 3)
    }
}
