// The stand-in server's view of the bus: ids, addresses, descriptors and interface claims
// (see the wire protocol at the top of StandInServer.swift).

import DeviceBus
import Foundation

// MARK: - libusb error codes (libusb.h 1.0.26, enum libusb_error)

enum LibUSBStatus {
    static let io: Int32 = -1
    static let invalidParam: Int32 = -2
    static let access: Int32 = -3
    static let noDevice: Int32 = -4
    static let notFound: Int32 = -5
    static let busy: Int32 = -6
    static let timeout: Int32 = -7
    static let pipe: Int32 = -9
    static let interrupted: Int32 = -10

    static func code(for error: USBTransferError) -> Int32 {
        switch error {
        case .timeout: timeout
        case .stall: pipe
        case .disconnected: noDevice
        case .io: io
        case .cancelled: interrupted
        }
    }
}

// MARK: - device registry (ids, addresses, descriptors, claims)

/// Numbers each enumeration the fleet reports, assigns bus addresses the way a host controller
/// does (the next free one on the bus), caches descriptors, and owns interface claims.
final class DeviceRegistry: @unchecked Sendable {
    struct Entry {
        var id: UInt32
        var device: StandInAttachedDevice
        var address: UInt8
        var deviceDescriptor: [UInt8]?
        var configuration: [UInt8]?
        /// interface number → the connection holding the claim
        var claims: [UInt8: UInt64] = [:]
    }
    private struct Key: Hashable {
        var portPath: USBPortPath
        var enumeration: UInt64
    }

    private let lock = NSLock()
    private var ids: [Key: UInt32] = [:]
    private var entries: [UInt32: Entry] = [:]
    private var nextID: UInt32 = 1
    private var nextAddress: [UInt8: UInt8] = [:]

    /// Replaces the set of current enumerations; returns their entries sorted by port path.
    func update(with devices: [StandInAttachedDevice]) -> [Entry] {
        lock.withLock {
            var current: [UInt32: Entry] = [:]
            for device in devices {
                let key = Key(portPath: device.portPath, enumeration: device.enumeration)
                if let id = ids[key], var entry = entries[id] {
                    entry.device = device
                    current[id] = entry
                    continue
                }
                let id = nextID
                nextID &+= 1
                ids[key] = id
                let bus = device.portPath.bus
                var address = nextAddress[bus, default: 2]   // 1 is the root hub
                nextAddress[bus] = address >= 127 ? 2 : address + 1
                if let assigned = device.address { address = assigned }
                current[id] = Entry(id: id, device: device, address: address)
            }
            // Enumerations no longer attached are gone for good.
            for (key, id) in ids where current[id] == nil { ids[key] = nil }
            entries = current
            return current.values.sorted { $0.device.portPath < $1.device.portPath }
        }
    }

    func entry(_ id: UInt32) -> Entry? { lock.withLock { entries[id] } }

    func storeDescriptors(_ id: UInt32, device: [UInt8], configuration: [UInt8]) {
        lock.withLock {
            entries[id]?.deviceDescriptor = device
            entries[id]?.configuration = configuration
        }
    }

    func remove(_ id: UInt32) {
        lock.withLock {
            entries[id] = nil
            for (key, value) in ids where value == id { ids[key] = nil }
        }
    }

    /// A transport that keeps its own claims (a simulated device) decides, so a handle opened
    /// in-process and one through the stand-in obey one rule; others are claimed here.
    func claim(_ id: UInt32, interface: UInt8, by owner: UInt64) -> Int32 {
        lock.withLock {
            guard let entry = entries[id] else { return LibUSBStatus.noDevice }
            if let simulated = entry.device.transport as? SimulatedTransport {
                switch simulated.claimInterface(interface, owner: owner) {
                case .claimed: break
                case .busy: return LibUSBStatus.busy
                case .gone: return LibUSBStatus.noDevice
                }
            } else if let holder = entry.claims[interface], holder != owner {
                return LibUSBStatus.busy
            }
            entries[id]!.claims[interface] = owner
            return 0
        }
    }

    func release(_ id: UInt32, interface: UInt8, by owner: UInt64) -> Int32 {
        lock.withLock {
            guard let entry = entries[id] else { return LibUSBStatus.noDevice }
            guard entry.claims[interface] == owner else { return LibUSBStatus.notFound }
            entries[id]!.claims[interface] = nil
            (entry.device.transport as? SimulatedTransport)?.releaseInterface(interface, owner: owner)
            return 0
        }
    }

    func holds(_ id: UInt32, interface: UInt8, owner: UInt64) -> Bool {
        lock.withLock { entries[id]?.claims[interface] == owner }
    }

    /// libusb_close, or the connection dropping: every claim of this handle goes.
    func releaseAll(by owner: UInt64) {
        lock.withLock {
            for (id, entry) in entries {
                for (interface, holder) in entry.claims where holder == owner {
                    (entry.device.transport as? SimulatedTransport)?.releaseInterface(interface, owner: owner)
                    entries[id]!.claims[interface] = nil
                }
            }
        }
    }
}
