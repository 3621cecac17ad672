import DFU
import Testing

@Suite struct DFUCancellationTests {
    @Test func aCancelledPollStopsInsteadOfWaitingOutThePollTimeout() async {
        // 60 s bwPollTimeout: without the cancellation check the task would sleep it out (or, once
        // cancelled, skip the sleep and carry on as if nothing happened).
        let transport = ScriptedTransport([status(.dnbusy, poll: 60_000)])
        let task = Task { () async throws(DFUError.Reason) -> DFUStatus in try await DFUInterface(transport: transport).pollStatus() }
        task.cancel()
        let result = await task.result
        guard case .failure(let failure) = result, let reason = failure as? DFUError.Reason else {
            Issue.record("expected cancellation, got \(result)")
            return
        }
        #expect(reason == .transfer(.cancelled, request: .getStatus))
    }
}
