import ArgumentParser
import DFU
import Foundation
import ParticleDevice
import USB

/// `keyline devices`: what is plugged into this station right now.
struct DevicesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "devices",
        abstract: "List attached Particle devices (normal and DFU mode) by USB port.",
        discussion: """
            One row per device: USB port path (bus-port.port…, the label to put on the hub), mode \
            (normal or dfu), platform, and device ID (the USB serial number). A device that cannot \
            be opened is listed with the reason, e.g. a missing udev rule.

            With --json, or when standard output is not a terminal, prints one JSON object per line.

            Exit codes: 0 listed (possibly nothing attached), 1 USB enumeration failed.
            """)

    @Flag(help: "Print JSON lines instead of a table.")
    var json = false

    func run() async throws {
        let context = USBContext()
        let devices: [USBDeviceInfo]
        do {
            devices = try await context.devices()
        } catch {
            printError(error.description, json: useJSON)
            throw ExitCode(1)
        }
        let rows = devices.map(DeviceRow.init)
        if useJSON {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            for row in rows {
                print(String(decoding: try encoder.encode(row), as: UTF8.self))
            }
        } else if rows.isEmpty {
            print("No Particle devices attached" + (context.unavailableReason.map { " (USB unavailable: \($0))" } ?? "") + ".")
        } else {
            printTable(rows)
        }
    }

    private var useJSON: Bool { json || isatty(STDOUT_FILENO) == 0 }

    private func printTable(_ rows: [DeviceRow]) {
        let header = ["PORT", "MODE", "PLATFORM", "DEVICE ID", "USB ID"]
        let cells = rows.map { row in
            [row.port, row.mode, row.platform ?? "unknown", row.deviceID ?? "(\(row.error ?? "no serial"))", "\(row.vendorID):\(row.productID)"]
        }
        let widths = header.indices.map { column in ([header] + cells).map { $0[column].count }.max() ?? 0 }
        for line in [header] + cells {
            print(line.enumerated().map { index, cell in
                index == line.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  "))
        }
    }
}

/// One `keyline devices` row (also its JSON form).
struct DeviceRow: Codable, Equatable {
    var port: String
    var bus: UInt8
    var ports: [UInt8]
    var mode: String
    var platform: String?
    var platformID: UInt16?
    var deviceID: String?
    var vendorID: String
    var productID: String
    var address: UInt8
    var error: String?

    init(_ device: USBDeviceInfo) {
        port = device.portPath.description
        bus = device.portPath.bus
        ports = device.portPath.ports
        mode = device.mode.rawValue
        // Naming a platform is ParticleDevice's knowledge, not USB's.
        let match = Platform.matching(vendorID: device.vendorID, productID: device.productID)
        platform = match?.platform.name
        platformID = match?.platform.id
        deviceID = device.serialNumber?.lowercased()
        vendorID = Self.hex(device.vendorID)
        productID = Self.hex(device.productID)
        address = device.address
        error = device.openError?.description
    }

    private static func hex(_ value: UInt16) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 4 - digits.count) + digits
    }
}

/// Prints an error for a person (stderr) or as a JSON line (stdout) for scripts.
func printError(_ message: String, json: Bool) {
    if json {
        let object = ["error": message]
        if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) {
            print(String(decoding: data, as: UTF8.self))
        }
    } else {
        FileHandle.standardError.write(Data("error: \(message)\n".utf8))
    }
}
