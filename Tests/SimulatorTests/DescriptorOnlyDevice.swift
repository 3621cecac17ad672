import DFU
import DeviceBus
import Foundation
import Simulator

/// A device that answers only standard GET_DESCRIPTOR requests, shaped like a Photon in DFU mode
/// (descriptors per dfu-protocol.md §1.1 and §2.3): enough to test the stand-in server and the
/// C library's descriptor handling without depending on the full device simulator.
struct DescriptorOnlyDevice: ControlTransport {
    var serial: String
    var productID: UInt16 = 0xD006
    var alternateNames = [
        "@Internal Flash   /0x08000000/03*016Ka,01*016Kg,01*064Kg,07*128Kg",
        "@DCT Flash   /0x00000000/01*016Kg",
    ]
    let selectedAlternates = AlternateLog()

    final class AlternateLog: @unchecked Sendable {
        private let lock = NSLock()
        private var values: [UInt8] = []
        func append(_ value: UInt8) { lock.withLock { values.append(value) } }
        var all: [UInt8] { lock.withLock { values } }
    }

    var deviceDescriptor: [UInt8] {
        [18, 1, 0x00, 0x02, 0, 0, 0, 64, 0x04, 0x2B, UInt8(productID & 0xFF), UInt8(productID >> 8), 0x50, 0x02, 1, 2, 3, 1]
    }

    var configuration: [UInt8] {
        var interfaces: [UInt8] = []
        for (alt, _) in alternateNames.enumerated() {
            interfaces += [9, 4, 0, UInt8(alt), 0, 0xFE, 0x01, 0x02, UInt8(4 + alt)]
        }
        let functional: [UInt8] = [9, 0x21, 0x0B, 0xFF, 0x00, 0x00, 0x10, 0x1A, 0x01]
        let total = 9 + interfaces.count + functional.count
        return [9, 2, UInt8(total & 0xFF), UInt8(total >> 8), 1, 1, 0, 0xC0, 50] + interfaces + functional
    }

    func string(_ index: UInt8) -> [UInt8]? {
        let text: String
        switch index {
        case 0: return [4, 3, 0x09, 0x04]
        case 1: text = "Particle"
        case 2: text = "Photon DFU Mode"
        case 3: text = serial
        case 4..<(4 + UInt8(alternateNames.count)): text = alternateNames[Int(index) - 4]
        default: return nil
        }
        let utf16 = text.utf16.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }
        return [UInt8(2 + utf16.count), 3] + utf16
    }

    func control(_ setup: ControlSetup, data: [UInt8], timeout: Duration) async throws(USBTransferError) -> [UInt8] {
        guard setup.requestType == 0x80, setup.request == 6 else { throw .stall }
        let answer: [UInt8]?
        switch UInt8(setup.value >> 8) {
        case 1: answer = deviceDescriptor
        case 2: answer = configuration
        case 3: answer = string(UInt8(setup.value & 0xFF))
        default: answer = nil
        }
        guard let answer else { throw .stall }
        return Array(answer.prefix(Int(setup.length)))
    }

    func selectAlternateSetting(interface: UInt8, alternateSetting: UInt8) async throws(USBTransferError) {
        guard interface == 0, Int(alternateSetting) < alternateNames.count else { throw .stall }
        selectedAlternates.append(alternateSetting)
    }
}

/// A fleet whose attached set a test changes at will.
final class ScriptedFleet: StandInFleet, @unchecked Sendable {
    private let lock = NSLock()
    private var devices: [StandInAttachedDevice]

    init(_ devices: [StandInAttachedDevice]) { self.devices = devices }

    func currentEnumerations() -> [StandInAttachedDevice] { lock.withLock { devices } }

    func set(_ devices: [StandInAttachedDevice]) { lock.withLock { self.devices = devices } }
}
