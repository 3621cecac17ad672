import Foundation
import Simulator
import Testing
import TestSupport
@testable import USB
import DeviceBus

/// Options that would trap if converted unchecked (a Duration from inf, nan or 1e300 seconds)
/// are usage errors, and the USB context keeps libusb off the caller's thread.
@Suite struct DFUCommandTests {
    @Test(arguments: ["inf", "nan", "1e300", "0", "-1", "601"])
    func anOutOfRangeTimeoutIsAUsageError(timeout: String) async throws {
        let result = try await Subprocess.run(Subprocess.keyline, ["dfu", "enter", "--timeout=\(timeout)"])
        #expect(result.status == 64, "\(result.stdout)\n\(result.stderr)")
        #expect(result.stderr.contains("--timeout must be more than 0 and at most 600"), "\(result.stderr)")
    }

    /// `sim serve` with a bad factor must exit 64 at once; a missing check would serve (or crash)
    /// instead, so the child is given a bounded time and stopped if still running.
    @Test(arguments: [["--time-scale", "inf"], ["--time-scale", "1e300"], ["--time-scale", "nan"], ["--time-scale", "1001"],
                      ["--faults", "slowdown=inf"], ["--faults", "slowdown=1e300"], ["--faults", "slowdown=0"]])
    func simServeRejectsUnboundedFactors(options: [String]) async throws {
        let socket = Subprocess.socketPath()
        let serve = try Subprocess.Background(Subprocess.keylineSim, ["serve", "--socket", socket, "--fleet", "photon:1"] + options)
        let deadline = ContinuousClock.now + .seconds(60)
        while serve.process.isRunning && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        let running = serve.process.isRunning
        let output = serve.output
        let status = await serve.stop()
        try? FileManager.default.removeItem(atPath: socket)
        #expect(!running, "sim serve \(options) kept running: \(output)")
        #expect(status == 64, "\(output)")
        #expect(output.contains("must be"), "\(output)")
    }

    @Test func aContextStartsLibUSBOnlyOnItsOwnThread() async {
        // init() does no libusb work (it may run on the cooperative pool); make() starts libusb
        // on the context's worker thread before returning.
        let lazy = USBContext()
        #expect(await lazy.isInitialized == false)
        let made = await USBContext.make()
        #expect(await made.isInitialized == true)
    }

    @Test func aCancelledWaitForADeviceStopsAtOnce() async {
        // The real libusb with no such device attached: without the cancellation check the task
        // would keep polling for the whole 60 s and then report a timeout.
        let context = await USBContext.make()
        let match = USBDeviceMatch(serialNumber: String(repeating: "f", count: 24), vendorID: 0x2B04, productIDs: [0xD00D])
        let task = Task { () async throws(USBLocatorError) -> USBOpenedDevice in try await context.waitForDevice(match, timeout: .seconds(60)) }
        task.cancel()
        let result = await task.result
        guard case .failure(let failure) = result, let error = failure as? USBLocatorError else {
            Issue.record("expected a failure, got \(result)")
            return
        }
        #expect(error == .cancelled(match))
    }
}
