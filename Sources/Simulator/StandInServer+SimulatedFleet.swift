
// The thin conformance between the device simulator (SimulatedFleet, SimulatedTransport) and the
// stand-in server's view of a bus.

extension SimulatedTransport: BlockingControlTransport {}

extension SimulatedFleet: StandInFleet {
    public func currentEnumerations() -> [StandInAttachedDevice] {
        attachedDevices().map { attachment in
            // The session counts enumerations of one device; mixing in the device's identity keeps
            // a different device later plugged into the same port from looking like the old one.
            let identity = UInt64(UInt(bitPattern: ObjectIdentifier(attachment.device).hashValue))
            return StandInAttachedDevice(portPath: attachment.port, enumeration: identity &* 1_000_003 &+ attachment.transport.session,
                                         address: attachment.address, transport: attachment.transport)
        }
    }
}
