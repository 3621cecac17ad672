import DeviceBus
import ParticlePlatform
import Registry

/// Devices that showed up on a port outside the pipeline's `ports:` list (PortAllowList.swift).
/// Each arrival is said once — a `port_not_permitted` event for the terminal and `--json`, and a
/// `port.not_permitted` row in the registry's audit trail (station, device when its serial is a
/// device ID, `{"port": PATH}`) — and the device is left alone: the run never opens it.
/// Registry writes go one after another on a task of their own, so the bus watcher never waits on
/// the database; `finish` waits for the last of them.
final class PortRefusals: Sendable {
    private struct Refusal: Sendable {
        let port: String
        let deviceID: String?
    }

    private let continuation: AsyncStream<Refusal>.Continuation
    private let recorder: Task<Void, Never>
    private let emit: ProvisioningEventSink
    private let jobID: Int64

    init(definition: PipelineDefinition, jobID: Int64, registry: RegistryDatabase, emit: @escaping ProvisioningEventSink) {
        let (refusals, continuation) = AsyncStream.makeStream(of: Refusal.self)
        self.continuation = continuation
        self.emit = emit
        self.jobID = jobID
        let (station, product) = (definition.station, definition.product.id)
        recorder = Task {
            for await refusal in refusals {
                do {
                    try await registry.appendEvent(kind: "port.not_permitted", station: station, productID: product,
                                                   deviceID: refusal.deviceID, jobID: jobID, detail: ["port": refusal.port])
                } catch {
                    // The device stays untouched either way; the operator learns the trail has a gap.
                    emit(ProvisioningEvent(type: .note, jobID: jobID, port: refusal.port, deviceID: refusal.deviceID,
                                           message: "could not record port.not_permitted in the registry: \(error)"))
                }
            }
        }
    }

    /// A device arrived on `port`, which the pipeline does not permit. `deviceID` only when the
    /// serial enumeration read is a device ID of `platform` (the device's own text otherwise).
    func refuse(port: USBPortPath, deviceID: String?, platform: Platform) {
        let path = port.description
        emit(ProvisioningEvent(type: .portNotPermitted, jobID: jobID, port: path, deviceID: deviceID, platform: platform.name,
                               outcome: .skipped, message: Self.reason(port: path)))
        continuation.yield(Refusal(port: path, deviceID: deviceID))
    }

    static func reason(port: String) -> String {
        "not permitted: port \(port) is not in the pipeline's ports list; the device was not touched"
    }

    /// No more refusals; returns once every one is recorded (or reported as not recorded).
    func finish() async {
        continuation.finish()
        await recorder.value
    }
}
