import ArgumentParser
import CommandReporting
import Custody
import Foundation
import Registry

extension CustodyCommand {
    struct Rotate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Move every backup to a new epoch (after a suspected compromise), as a new object generation.",
            discussion: """
                Rebuilds the old epoch's identity from M of its shares, makes a new epoch (split to the \
                --custodian set, share files in --out), then re-encrypts every backup under the old epoch \
                (of --product, or all) to the new epoch's recipient as a new object generation \
                (<spki-sha256>.g2.age beside <spki-sha256>.age) and points the registration at it in the \
                transaction that records it, one `escrow.rotated` event per object. The backup's other \
                recipients (an offsite one) are kept. When no active backup is left under the old epoch, it \
                is retired.

                The stores are write-once: the OLD OBJECTS STAY, readable by the old identity, until their \
                retention ends (S3 Object Lock may forbid deleting them for years). A rotation limits what a \
                leaked old identity opens from now on; it cannot un-write the past. Treat every key escrowed \
                under the old epoch as exposed if its shares were.

                Killed at any point (even kill -9), a rotation resumes with --resume CEREMONY and the old \
                epoch's shares: an object written but not recorded is adopted, nothing is written twice. \
                --dry-run --from EPOCH lists what would move and writes nothing.
                """)

        @Option(help: "The epoch to rotate away from (its name). Required with --dry-run.")
        var from: String?

        @Option(help: "Only the backups of this product (default: every product).")
        var product: String?

        @Flag(help: "List the backups that would move; record and write nothing.")
        var dryRun = false

        @Option(help: "Continue rotation ceremony ID after an interruption.")
        var resume: Int64?

        @OptionGroup var shares: ShareOptions

        @Option(help: "The new epoch's name.") var newEpoch: String?
        @Option(help: "Shares needed to recover the new epoch (M).") var threshold: Int?
        @Option(name: .customLong("custodian"), help: "NAME=age1… of one new custodian (repeat for each of the N).")
        var custodians: [String] = []
        @Option(name: .customLong("out"), help: "Folder for the new epoch's share files.") var folder: String?

        @Option(help: "This bench's name (default: KEYLINE_STATION or the host name).") var station: String?
        @OptionGroup var output: OutputOptions

        func validate() throws {
            if dryRun {
                guard from != nil, resume == nil else { throw ValidationError("--dry-run needs --from EPOCH (and no --resume)") }
            } else if resume == nil {
                guard newEpoch != nil, threshold != nil, folder != nil, !custodians.isEmpty else {
                    throw ValidationError("a new rotation needs --new-epoch NAME --threshold M --custodian NAME=age1… (each) --out DIR")
                }
            }
            if !dryRun && shares.files.isEmpty { throw ValidationError("give the old epoch's share files with --shares") }
        }

        func run() async throws {
            try await DatabaseCommand.run(json: output.json) {
                let station = CustodyStation(self.station)
                let registry = try await station.registry(action: "rotate escrow epochs", bound: !dryRun)
                let rotation = EscrowRotation(registry: registry, station: station.name)
                if dryRun {
                    guard let epoch = try await registry.epoch(named: from!) else { throw CustodyError.unknownEpoch(from!) }
                    let planned = try await rotation.plan(from: epoch, productID: product)
                    CustodyOutput.plan(planned, from: epoch, json: output.json)
                    return
                }
                let ceremony: CustodyCeremony
                let old: RecoveredEpoch
                if let resume {
                    guard let found = try await registry.ceremony(id: resume), found.kind == .rotate, found.finishedAt == nil,
                          let epoch = try await registry.epochs().first(where: { $0.id == found.epochID }) else {
                        throw CustodyError.notAnUnfinishedRotation(resume)
                    }
                    ceremony = found
                    old = try await shares.shares.recover(registry, epoch: epoch.name)
                } else {
                    old = try await shares.shares.recover(registry, epoch: from)
                    let custodians = try self.custodians.map { try Custodian($0) }
                    let (created, started) = try await rotation.start(from: old, newEpochName: newEpoch!, threshold: threshold!,
                                                                      custodians: custodians, folder: folder!, productID: product)
                    CustodyOutput.epochCreated(created, json: output.json)
                    ceremony = started
                }
                CustodyOutput.rotationStarted(ceremony, json: output.json)
                let json = output.json
                let summary = try await rotation.run(ceremony, old: old) { moved in CustodyOutput.rotated(moved, json: json) }
                CustodyOutput.rotationSummary(summary, json: output.json)
                if !summary.failures.isEmpty { throw ExitCode(KeylineExit.someDevicesFailed.rawValue) }
            }
        }
    }
}
