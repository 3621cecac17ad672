import ArgumentParser
import CommandReporting
import Custody
import Foundation
import Registry

/// `keyline custody …`: escrow epochs whose identity exists only as custodians' Shamir shares.
struct CustodyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "custody",
        abstract: "Escrow epochs split among custodians: create, list, reshare, rotate (RMA/officer bench).",
        discussion: """
            An escrow epoch is an age X25519 identity made in memory and split M-of-N with Shamir's \
            scheme over GF(2^8); each share is an age file to one custodian's recipient, and the \
            identity itself is never written. Stations encrypt backups to the epoch's recipient \
            (`keyline custody recipient >> recipients.txt`; add an offsite recipient on another line: \
            every backup then has one stanza per recipient and either opens it). A restore takes M \
            share files (`keyline restore … --shares`). Ceremonies are recorded in the registry: who \
            (the database login), where (--station), which shares, what was done under them. Run them \
            with an RMA/officer login (`keyline db grant LOGIN --role rma --station NAME`).

            EXIT CODES
              0   done
              3   rotate: some backups could not be moved (listed); run --resume after fixing them
              64  usage: bad custodians, too few shares, unknown or retired epoch, a name taken
              65  a share refused (tampered, another epoch's, repeated, or not opened): each is named
              66  a share or identity file missing; 73 a share file exists already (never overwritten)
              75  registry or store unreachable; 77 the login may not run ceremonies
            """,
        subcommands: [Create.self, List.self, Recipient.self, Reshare.self, Rotate.self, Lost.self]
    )

    /// The options every ceremony that brings shares takes.
    struct ShareOptions: ParsableArguments {
        @Option(name: .customLong("shares"), parsing: .upToNextOption,
                help: "Share files of the epoch (the age files, or documents custodians opened with `age -d`).")
        var files: [String] = []

        @Option(name: .customLong("custodian-identity"),
                help: "A custodian's age identity file that opens their share file (repeatable). Without one, keyline asks at the terminal.")
        var identities: [String] = []

        var shares: RestoreSharesOptions { RestoreSharesOptions(files: files, identities: identities) }
    }

    /// The new custodian set of a create, reshare or rotate.
    struct SplitOptions: ParsableArguments {
        @Option(help: "Shares needed to recover the identity (M).")
        var threshold: Int

        @Option(name: .customLong("custodian"), help: "NAME=age1… of one custodian (repeat for each of the N).")
        var custodians: [String] = []

        @Option(name: .customLong("out"), help: "Folder for the share files (made 0700; files 0600, never overwritten).")
        var folder: String

        func parsed() throws -> [Custodian] { try custodians.map { try Custodian($0) } }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make an escrow epoch: a new identity in memory, split into one share file per custodian.")

        @Argument(help: "The epoch's name (e.g. 2026-a).") var name: String
        @OptionGroup var split: SplitOptions
        @Option(help: "This bench's name (default: KEYLINE_STATION or the host name).") var station: String?
        @OptionGroup var output: OutputOptions

        func run() async throws {
            try await DatabaseCommand.run(json: output.json) {
                let custodians = try split.parsed()
                let station = CustodyStation(self.station)
                let registry = try await station.registry(action: "create escrow epochs")
                let created = try await EpochCeremonies(registry: registry, station: station.name)
                    .create(name: name, threshold: split.threshold, custodians: custodians, folder: split.folder)
                CustodyOutput.epochCreated(created, json: output.json)
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Escrow epochs, their share sets and custodians.")
        @OptionGroup var output: OutputOptions

        func run() async throws {
            try await DatabaseCommand.run(json: output.json) {
                let registry = try await CustodyStation(nil).registry(action: "read escrow epochs", bound: false)
                for epoch in try await registry.epochs() {
                    CustodyOutput.epoch(epoch, shares: try await registry.activeShares(epochID: epoch.id), json: output.json)
                }
            }
        }
    }

    struct Recipient: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print an epoch's recipient (default: the newest active one), for stations' recipients files.")
        @Argument(help: "The epoch's name.") var name: String?

        func run() async throws {
            try await DatabaseCommand.run(json: false) {
                let registry = try await CustodyStation(nil).registry(action: "read escrow epochs", bound: false)
                let epochs = try await registry.epochs()
                let chosen = name.map { wanted in epochs.first { $0.name == wanted } } ?? epochs.last { $0.status == .active }
                guard let epoch = chosen else { throw CustodyError.unknownEpoch(name ?? "(any active)") }
                guard epoch.status == .active else { throw CustodyError.retiredEpoch(epoch.name) }
                print("# escrow epoch \(epoch.name)")
                print(epoch.recipient)
            }
        }
    }

    struct Reshare: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Re-split an epoch to a new custodian set from M of its shares; the old shares are retired, no backup changes.")
        @OptionGroup var shares: ShareOptions
        @OptionGroup var split: SplitOptions
        @Option(help: "This bench's name (default: KEYLINE_STATION or the host name).") var station: String?
        @OptionGroup var output: OutputOptions

        func run() async throws {
            try await DatabaseCommand.run(json: output.json) {
                let custodians = try split.parsed()
                let station = CustodyStation(self.station)
                let registry = try await station.registry(action: "reshare escrow epochs")
                let recovered = try await shares.shares.recover(registry)
                let created = try await EpochCeremonies(registry: registry, station: station.name)
                    .reshare(recovered, threshold: split.threshold, custodians: custodians, folder: split.folder)
                CustodyOutput.epochCreated(created, json: output.json)
            }
        }
    }

    struct Lost: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Report a custodian's share lost: the audit counts the reachable rest against the threshold.")
        @Argument(help: "The epoch's name.") var epoch: String
        @Argument(help: "The custodian's name.") var custodian: String
        @Option(help: "Why (recorded).") var reason: String
        @Option(help: "This bench's name (default: KEYLINE_STATION or the host name).") var station: String?

        func run() async throws {
            try await DatabaseCommand.run(json: false) {
                let station = CustodyStation(self.station)
                let registry = try await station.registry(action: "report custody shares lost")
                let share = try await EpochCeremonies(registry: registry, station: station.name)
                    .reportLost(epochName: epoch, custodian: custodian, reason: reason)
                print("share \(share.x) of epoch \(epoch) (\(custodian)) recorded as lost")
            }
        }
    }
}

/// Share files and custodian identities as given on the command line.
struct RestoreSharesOptions {
    let files: [String]
    let identities: [String]

    func recover(_ registry: RegistryDatabase, epoch: String? = nil) async throws -> RecoveredEpoch {
        try await ShareRecovery.withIdentityFiles(identities, registry: registry, prompt: CustodianPrompt.onTerminal)
            .recover(files, epochName: epoch)
    }
}
