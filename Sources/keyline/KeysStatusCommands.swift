import ArgumentParser
import CommandReporting
import Foundation
import Registry
import RMABench

/// What `keys revoke` and `keys supersede` take: which device's key, why, and under which ticket.
struct KeyStatusOptions: ParsableArguments {
    @Argument(help: "Device ID (24 hex digits).")
    var deviceID: String

    @Option(name: [.customLong("product"), .customLong("product_id")],
            help: "Product of the key. Default: the one product the device has an active key in.")
    var product: String?

    @Option(help: "Why (required; recorded on the registration and in the key.* event).")
    var reason: String

    @Option(help: "A ticket or case number to record with it (RMA, incident).")
    var ticket: String?

    @Option(help: "The bench or office recording it (default: KEYLINE_STATION or the host name).")
    var station: String?

    @OptionGroup var output: OutputOptions

    var request: KeyStatusRequest {
        KeyStatusRequest(deviceID: deviceID, productID: product, reason: reason, ticket: ticket)
    }

    func run(_ status: RegistrationStatus) async throws {
        try await DatabaseCommand.run(json: output.json) {
            let changed = try await KeyStatusChange.change(request, to: status, station: station)
            if output.json {
                var object: [String: Any] = [
                    "deviceID": changed.deviceID, "product": changed.productID, "fingerprint": changed.fingerprint,
                    "registrationID": changed.id, "status": changed.status.rawValue, "reason": reason,
                ]
                object["ticket"] = ticket
                CLI.printJSON(object)
            } else {
                print("Key \(changed.fingerprint) of device \(changed.deviceID) in product \(changed.productID) is "
                      + "\(changed.status.rawValue): \(reason)" + (ticket.map { " (ticket \($0))" } ?? ""))
            }
        }
    }
}

extension KeysCommand {
    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke a device's registered key (compromised or retired), with reason and ticket.",
            discussion: """
                Marks the device's active key revoked in the registry: the device then has no active key, \
                `restore` refuses to put that key back and `keyline audit` lists it as key_revoked. The \
                registry records who (the login), where (--station), when and why (--reason, --ticket) on \
                the registration and as a key.revoked event. Revoking is an administrator's call: station \
                and bench logins are refused (exit 77). Nothing is written to a device.

                EXIT CODES
                  0   revoked
                  64  usage: a bad device ID, an empty --reason, or several products (name --product)
                  65  the device has no active key (in that product)
                  75  registry unreachable
                  77  the login may not revoke keys
                  78  database settings invalid, or the registry's schema is older than this keyline
                """)

        @OptionGroup var options: KeyStatusOptions

        func run() async throws { try await options.run(.revoked) }
    }

    struct Supersede: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Mark a device's registered key superseded (replaced at a bench), with reason and ticket.",
            discussion: """
                Marks the device's active key superseded without registering another (`keys send \
                --supersede` and `keys doctor` do both at once). The registry records who (the login), \
                where (--station, the bench the login is bound to), when and why (--reason, --ticket) on \
                the registration and as a key.superseded event. A keyline_rma login bound to the bench, \
                or an administrator, may supersede; anyone else is refused (exit 77).

                EXIT CODES
                  0   superseded
                  64  usage: a bad device ID, an empty --reason, or several products (name --product)
                  65  the device has no active key (in that product)
                  75  registry unreachable
                  77  the login may not supersede keys as this station
                  78  database settings invalid, or the registry's schema is older than this keyline
                """)

        @OptionGroup var options: KeyStatusOptions

        func run() async throws { try await options.run(.superseded) }
    }
}
