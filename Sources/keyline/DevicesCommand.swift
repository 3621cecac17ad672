import ArgumentParser
import Foundation
import ParticleDevice
import USB
import Provisioning
import CommandReporting

/// `keyline devices`: what is plugged into this station right now.
struct DevicesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "devices",
        abstract: "List attached Particle devices (normal and DFU mode) by USB port.",
        discussion: """
            One row per device: USB port path (bus-port.port…, the label to put on the hub), mode \
            (normal or dfu), platform, device ID (the USB serial number), and for a normal-mode \
            device its cloud connection as Device OS reports it (control request 300, as \
            particle-usb's getCloudConnectionStatus): online (breathing cyan), connecting (blinking \
            cyan: it cannot reach the cloud, or the cloud refuses its key), offline. A device that \
            cannot be opened is listed with the reason, e.g. a missing udev rule. With --json, one \
            JSON object per device, one per line ("cloud": connected|connecting|disconnected|disconnecting).

            With --pipeline FILE, whose `ports:` list names the jig's ports, each port shows its \
            nickname, and a device on a port outside the list is marked NOT PERMITTED ("permitted": \
            false in JSON): `keyline provision` will not touch it, and neither does this listing (its \
            cloud status is not read).

            Exit codes: 0 listed (possibly nothing attached), 65 the pipeline's `ports:` is invalid, \
            66 the pipeline file is missing, 69 USB enumeration failed, 74 libusb error.
            """)

    @Option(help: "A pipeline file: mark the ports its `ports:` list does not permit, and show port nicknames.")
    var pipeline: String?

    @OptionGroup var output: OutputOptions

    func run() async throws {
        try await CLI.run(json: output.json) {
            var ports: PortAllowList?
            if let pipeline {
                ports = try PipelineLoader.loadPorts(path: pipeline, environment: ProcessInfo.processInfo.environment)
            }
            let context = await USBContext.make()
            var rows: [AttachedParticleDevice] = []
            for info in try await context.devices() {
                var row = AttachedParticleDevice(info.busDevice, openError: info.openError?.description)
                if let ports {
                    row.permitted = ports.permits(portPath: row.port)
                    row.portName = ports.name(forPortPath: row.port)
                }
                if row.mode == "normal", info.openError == nil, row.permitted != false {
                    do {
                        let device = try await context.open(info)
                        await row.readCloudStatus(over: device)
                        await device.close()
                    } catch {
                        row.cloudError = "cannot open: \(error)"
                    }
                }
                rows.append(row)
            }
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
        let header = ["PORT", "MODE", "PLATFORM", "DEVICE ID", "CLOUD", "USB ID"]
        let cells = rows.map { row in
            [row.port + (row.portName.map { " (\($0))" } ?? "") + (row.permitted == false ? " NOT PERMITTED" : ""), row.mode, row.platform ?? "unknown", row.deviceID ?? (row.error == nil ? "(no serial)" : "(cannot open, see below)"),
             row.cloud?.display ?? (row.mode == "normal" ? "(unknown, see below)" : "-"), "\(row.vendorID):\(row.productID)"]
        }
        let widths = header.indices.map { column in ([header] + cells).map { $0[column].count }.max() ?? 0 }
        for line in [header] + cells {
            print(line.enumerated().map { index, cell in
                index == line.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  "))
        }
        for row in rows {
            if let error = row.error { print("\(row.port): \(error)") }
            if let error = row.cloudError { print("\(row.port): cloud status: \(error)") }
        }
    }
}
