import ArgumentParser
import Foundation
import ParticleDevice
import USB
import CommandReporting

/// `keyline devices`: what is plugged into this station right now.
struct DevicesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "devices",
        abstract: "List attached Particle devices (normal and DFU mode) by USB port.",
        discussion: """
            One row per device: USB port path (bus-port.port…, the label to put on the hub), mode \
            (normal or dfu), platform, and device ID (the USB serial number). A device that cannot \
            be opened is listed with the reason, e.g. a missing udev rule. With --json, one JSON \
            object per device, one per line.

            Exit codes: 0 listed (possibly nothing attached), 69 USB enumeration failed, 74 libusb error.
            """)

    @OptionGroup var output: OutputOptions

    func run() async throws {
        try await CLI.run(json: output.json) {
            let context = await USBContext.make()
            let rows = try await context.devices().map { AttachedParticleDevice($0.busDevice, openError: $0.openError?.description) }
            if output.json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                for row in rows {
                    FileHandle.standardOutput.write(try encoder.encode(row) + Data("\n".utf8))
                }
            } else if rows.isEmpty {
                let reason = await context.unavailableReason()
                print("No Particle devices attached" + (reason.map { " (USB unavailable: \($0))" } ?? "") + ".")
            } else {
                printTable(rows)
                if USBContext.isStandIn { print("(simulated devices: libusb is keyline's stand-in, KEYLINE_SIM_SOCKET)") }
            }
        }
    }

    private func printTable(_ rows: [AttachedParticleDevice]) {
        let header = ["PORT", "MODE", "PLATFORM", "DEVICE ID", "USB ID"]
        let cells = rows.map { row in
            [row.port, row.mode, row.platform ?? "unknown", row.deviceID ?? (row.error == nil ? "(no serial)" : "(cannot open, see below)"),
             "\(row.vendorID):\(row.productID)"]
        }
        let widths = header.indices.map { column in ([header] + cells).map { $0[column].count }.max() ?? 0 }
        for line in [header] + cells {
            print(line.enumerated().map { index, cell in
                index == line.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  "))
        }
        for row in rows {
            if let error = row.error { print("\(row.port): \(error)") }
        }
    }
}
