import CommandReporting
import Custody
import Foundation
import Registry

/// How custody ceremonies print: a line per fact for people, one JSON object per line with --json.
enum CustodyOutput {
    static func epochCreated(_ created: EpochCreated, json: Bool) {
        if json {
            CLI.printJSON(["epoch": created.epoch.name, "recipient": created.epoch.recipient, "threshold": created.threshold,
                           "ceremonyID": created.ceremony.id, "shareFiles": created.shareFiles])
        } else {
            print("epoch \(created.epoch.name): recipient \(created.epoch.recipient), \(created.threshold) of \(created.shareFiles.count) shares (ceremony \(created.ceremony.id))")
            for path in created.shareFiles { print("  share file \(path)") }
            print("Hand each share file to its custodian only; the epoch identity was never written.")
        }
    }

    static func epoch(_ epoch: EscrowEpoch, shares: (CustodyShareSet, [CustodyShare])?, json: Bool) {
        if json {
            var object: [String: Any] = ["epoch": epoch.name, "recipient": epoch.recipient, "status": epoch.status.rawValue,
                                         "createdBy": epoch.createdBy]
            if let shares {
                let (set, members) = shares
                object["threshold"] = set.threshold
                object["custodians"] = members.map { ["name": $0.custodian, "share": $0.x, "lost": $0.lost] as [String: Any] }
            }
            CLI.printJSON(object)
        } else {
            var line = "\(epoch.name) (\(epoch.status.rawValue)) \(epoch.recipient)"
            if let shares {
                let (set, members) = shares
                line += ", \(set.threshold) of \(members.count): "
                    + members.map { "\($0.custodian)\($0.lost ? " (lost)" : "")" }.joined(separator: ", ")
            }
            print(line)
        }
    }

    static func plan(_ planned: [PlannedRotation], from epoch: EscrowEpoch, json: Bool) {
        for item in planned {
            if json {
                CLI.printJSON(["deviceID": item.deviceID, "product": item.productID, "from": item.currentObjectKey,
                               "to": item.newObjectKey, "store": item.storeURI, "dryRun": true])
            } else {
                print("would rotate \(item.deviceID) (product \(item.productID)): \(item.currentObjectKey) -> \(item.newObjectKey)")
            }
        }
        if json { CLI.printJSON(["summary": ["wouldRotate": planned.count, "from": epoch.name]]) } else {
            print("\(planned.count) backups under epoch \(epoch.name) would be rotated; nothing was written")
        }
    }

    static func rotationStarted(_ ceremony: CustodyCeremony, json: Bool) {
        if json { CLI.printJSON(["rotationCeremonyID": ceremony.id]) } else {
            print("rotation ceremony \(ceremony.id) (if interrupted: keyline custody rotate --resume \(ceremony.id) --shares …)")
        }
    }

    static func rotated(_ item: PlannedRotation, json: Bool) {
        if json {
            CLI.printJSON(["deviceID": item.deviceID, "product": item.productID, "from": item.currentObjectKey, "to": item.newObjectKey])
        } else {
            print("rotated \(item.deviceID): \(item.newObjectKey)")
        }
    }

    static func rotationSummary(_ summary: RotationSummary, json: Bool) {
        if json {
            CLI.printJSON(["summary": ["ceremonyID": summary.ceremonyID, "rotated": summary.rotated, "adopted": summary.adopted,
                                       "failed": summary.failures.count, "failures": summary.failures,
                                       "oldEpochRetired": summary.oldEpochRetired] as [String: Any]])
        } else {
            for failure in summary.failures { print("NOT ROTATED \(failure)") }
            print("\(summary.rotated + summary.adopted) rotated (\(summary.adopted) adopted after an interruption), \(summary.failures.count) failed"
                  + (summary.oldEpochRetired ? "; the old epoch is retired" : ""))
            print("The old objects stay in the write-once store until their retention ends; the old identity still opens them.")
        }
    }
}
