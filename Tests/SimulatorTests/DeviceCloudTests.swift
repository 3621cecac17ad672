import DeviceBus
import DeviceKeys
import Foundation
import ParticleDevice
import ParticlePlatform
import Simulator
import Testing
import TestSupport

/// Simulated devices connecting to the simulated cloud: online when the cloud holds their key,
/// blinking cyan when it does not, as Device OS reports it over USB (control request 300).
@Suite struct DeviceCloudTests {
    /// Logged lines, for the "simulator log" assertions.
    final class Log: @unchecked Sendable {
        private let lock = NSLock()
        private var lines: [String] = []
        func append(_ line: String) { lock.withLock { lines.append(line) } }
        var all: [String] { lock.withLock { lines } }
    }

    static func status(_ fleet: SimulatedFleet, _ device: SimulatedDevice) async throws -> CloudConnectionStatus? {
        guard let attachment = fleet.attachedDevices().first(where: { $0.device === device && $0.mode == .normal }) else { return nil }
        return try await ParticleControlRequests(transport: attachment.transport).cloudConnectionStatus()
    }

    static func withLinkedFleet(_ body: (SimulatedFleet, SimulatedCloud, SimulatedCloudClient, Log) async throws -> Void) async throws {
        let cloud = try SimulatedCloud(token: SimulatedCloudTests.token)
        let server = try await SimulatedCloudServer(cloud: cloud)
        let client = try SimulatedCloudClient(url: server.url)
        let log = Log()
        let link = SimulatedCloudLink(client: client, retryInterval: .seconds(10), log: { log.append($0) })
        do {
            let fleet = try SimulatedFleet(timeScale: 0.001, seed: 21, cloudLink: link)
            try await body(fleet, cloud, client, log)
            await server.stop()
        } catch {
            await server.stop()
            throw error
        }
    }

    @Test func aDeviceWhoseKeyTheCloudHoldsIsOnline() async throws {
        try await Self.withLinkedFleet { fleet, cloud, client, log in
            let key = try DevicePrivateKey.generate(.ec)
            let id = fleet.plannedDeviceID(.boron, at: USBPortPath(bus: 1, ports: [1, 1]))
            try await client.registerFactory([.init(deviceID: id, platform: "boron", publicKey: key.publicKey)])
            let device = try fleet.add(.boron, at: USBPortPath(bus: 1, ports: [1, 1]), mode: .normal, factoryKey: key)
            #expect(device.deviceID == id)
            try await waitUntil("the Boron online") { device.cloudStatus == .connected }
            #expect(try await Self.status(fleet, device) == .connected)
            #expect(log.all.contains { $0.contains(id) && $0.contains("online (breathing cyan)") })
            #expect(cloud.callCounts.connects >= 1 && cloud.callCounts.api == 0)
            // The factory key was in the slot before boot: Device OS made none.
            #expect(device.statistics.keysGenerated == 0)
        }
    }

    @Test func aKeyTheCloudDoesNotHoldBlinksCyanUntilItIsUploaded() async throws {
        try await Self.withLinkedFleet { fleet, cloud, client, log in
            // Blank Photon: Device OS makes a key at boot that no cloud has seen.
            let device = try fleet.add(.photon, at: USBPortPath(bus: 1, ports: [1, 2]), mode: .normal)
            try await waitUntil("a refused handshake") { cloud.callCounts(for: device.deviceID).connects >= 1 }
            try await waitUntil("blinking cyan") { device.cloudStatus == .connecting }
            #expect(try await Self.status(fleet, device) == .connecting)
            try await waitUntil("the mismatch logged") { log.all.contains { $0.contains(device.deviceID) && $0.contains("key mismatch (blinking cyan)") } }
            // particle keys send: the device's retries then succeed.
            let key = try DevicePrivateKey(slot: device.privateKeySlot())
            let reply = try await SimulatedCloudTests.upload(client, device.deviceID, key.publicKey)
            #expect(reply.status == 200)
            try await waitUntil("online after the upload") { device.cloudStatus == .connected }
            #expect(try await Self.status(fleet, device) == .connected)
        }
    }

    @Test func aDeviceChecksAgainWhenItComesBackWithAnotherKey() async throws {
        try await Self.withLinkedFleet { fleet, _, client, _ in
            let key = try DevicePrivateKey.generate(.rsa)
            let port = USBPortPath(bus: 1, ports: [1, 3])
            try await client.registerFactory([.init(deviceID: fleet.plannedDeviceID(.photon, at: port), platform: "photon", publicKey: key.publicKey)])
            let device = try fleet.add(.photon, at: port, mode: .normal, factoryKey: key)
            try await waitUntil("online") { device.cloudStatus == .connected }
            // The slot is erased (flash corruption); at the next boot Device OS makes a new key.
            let slot = Platform.photon.privateKeySlot
            try device.writeMemory(alt: 1, address: UInt32(slot.offset), bytes: [UInt8](repeating: 0xFF, count: slot.size))
            device.plugIn(mode: .normal)
            try await waitUntil("a new key") { device.statistics.keysGenerated == 1 }
            try await waitUntil("blinking cyan with the new key") { device.cloudStatus == .connecting }
            #expect(try await Self.status(fleet, device) == .connecting)
            // Restoring the original key (as keyline restore does, then a reboot) brings it back.
            try device.writeMemory(alt: 1, address: UInt32(slot.offset), bytes: key.der + [UInt8](repeating: 0xFF, count: slot.size - key.der.count))
            device.plugIn(mode: .normal)
            try await waitUntil("online again") { device.cloudStatus == .connected }
        }
    }

    @Test func dfuModeIsNotOnline() async throws {
        try await Self.withLinkedFleet { fleet, _, _, _ in
            let device = try fleet.add(.boron, at: USBPortPath(bus: 1, ports: [1, 4]), mode: .dfu)
            #expect(device.cloudStatus == .disconnected)
        }
    }

    @Test func factoryStatesAreExactShares() throws {
        let state = try FactoryState.parse("blank:50%,corrupt:25%")
        let kinds = state.assign(count: 8, seed: 3)
        #expect(kinds.filter { $0 == .blank }.count == 4)
        #expect(kinds.filter { $0 == .corrupt }.count == 2)
        #expect(kinds.filter { $0 == .keyed }.count == 2)
        #expect(state.assign(count: 8, seed: 3) == kinds)
        #expect(FactoryState.blank.assign(count: 3, seed: 1) == [.blank, .blank, .blank])
        #expect(try FactoryState.parse("keyed").assign(count: 2, seed: 1) == [.keyed, .keyed])
        #expect(try FactoryState.parse("corrupt").assign(count: 2, seed: 1) == [.corrupt, .corrupt])
        for bad in ["blank:120%", "corrupt:5", "keyed:5%", "blank:60%,corrupt:50%", "rusty"] {
            #expect(throws: FleetSpecError.self, "\(bad)") { try FactoryState.parse(bad) }
        }
    }

    /// `keyline-sim serve --cloud … --factory blank:25%,corrupt:25%`: the cloud learns the factory
    /// keys first; keyed devices come online, corrupt ones blink cyan, blank ones hold no key the cloud knows.
    @Test func aServedLineRegistersItsFactoryKeys() async throws {
        let cloud = try SimulatedCloud(token: SimulatedCloudTests.token)
        let server = try await SimulatedCloudServer(cloud: cloud)
        do {
            try await Self.serveFactoryLine(cloud: cloud, url: server.url)
            await server.stop()
        } catch {
            await server.stop()
            throw error
        }
    }

    static func serveFactoryLine(cloud: SimulatedCloud, url: String) async throws {
        let link = SimulatedCloudLink(client: try SimulatedCloudClient(url: url), log: { _ in })
        let plan = try FleetSpec.plan(spec: "photon:4,boron:4", mode: "normal", timeScale: 0.001, faults: nil, protected: nil)
        let socket = "/tmp/keyline-simcloud-\(UUID().uuidString.prefix(8)).sock"
        let line = try await ServedLine(socket: socket, plan: plan, timeScale: 0.001, stateDirectory: nil, seed: 9,
                                        cloudConnection: .standard, accessDenied: [], cloudLink: link,
                                        factory: try FactoryState.parse("blank:25%,corrupt:25%"))
        let devices = line.fleet.allDevices.map(\.device)
        #expect(devices.count == 8)
        let kinds = try FactoryState.parse("blank:25%,corrupt:25%").assign(count: 8, seed: 9)
        for (device, kind) in zip(devices, kinds) {
            let record = cloud.record(for: device.deviceID)
            #expect(record?.platform == device.platform.name)
            switch kind {
            case .blank:
                #expect(record?.publicKeySPKI == nil)
            case .keyed:
                try await waitUntil("keyed \(device) online") { device.cloudStatus == .connected }
                #expect(record?.publicKeySPKI == (try DevicePrivateKey(slot: device.privateKeySlot())).publicKey.spkiDER)
            case .corrupt:
                try await waitUntil("corrupt \(device) blinking cyan") { cloud.callCounts(for: device.deviceID).connects >= 1 && device.cloudStatus == .connecting }
                #expect(record?.keySource == "factory")
                #expect(record?.publicKeySPKI != (try DevicePrivateKey(slot: device.privateKeySlot())).publicKey.spkiDER)
            }
        }
        #expect(cloud.callCounts.api == 0)
        try await line.stop()
    }
}
