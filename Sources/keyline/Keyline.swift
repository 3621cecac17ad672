import ArgumentParser
import DeviceKeys
import CommandReporting

@main
struct Keyline: AsyncParsableCommand {
    /// OpenSSL without its exit-time cleanup before anything else can initialise it (libpq over
    /// TLS would): keyline exits with device tasks possibly inside OpenSSL (OpenSSLRuntime).
    static func main() async {
        OpenSSLRuntime.prepare()
        await Self.main(nil)
    }

    static let configuration = CommandConfiguration(
        commandName: "keyline",
        abstract: "Factory provisioning and key escrow for Particle devices.",
        discussion: KeylineExit.helpText,
        subcommands: [
            ProvisionCommand.self,
            RestoreCommand.self,
            KeysCommand.self,
            DevicesCommand.self,
            DFUCommand.self,
            EscrowCommand.self,
            DatabaseCommand.self,
            AuditCommand.self,
            CustodyCommand.self,
            ReportCommand.self,
            CloudCommand.self,
            JobCommand.self,
            DashboardCommand.self,
        ]
    )
}
