import ArgumentParser

@main
struct Keyline: AsyncParsableCommand {
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
            SimCommand.self,
            EscrowCommand.self,
            DatabaseCommand.self,
            AuditCommand.self,
            ReportCommand.self,
        ]
    )
}
