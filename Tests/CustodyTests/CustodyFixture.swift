import Age
import Custody
import Foundation
import Registry
import Testing
import TestSupport

/// Five custodians (their identities in files, as each would keep on their own machine) and a
/// 3-of-5 epoch made for them in `scratch`.
struct CustodyFixture {
    let scratch: ScratchDirectory
    let custodianIdentities: [X25519Identity]
    let custodianFiles: [String]
    let created: EpochCreated

    static let names = ["alice", "bob", "carol", "dave", "erin"]

    init(_ registry: RegistryDatabase, scratch: ScratchDirectory, epoch: String = "epoch-1", threshold: Int = 3,
         folder: String = "shares") async throws {
        self.scratch = scratch
        custodianIdentities = Self.names.map { _ in X25519Identity.generate() }
        custodianFiles = try zip(Self.names, custodianIdentities).map { name, identity in
            let path = scratch.path("\(epoch)-\(name).txt")
            try scratch.write("\(epoch)-\(name).txt", Array(identity.identityFile().utf8))
            return path
        }
        let custodians = zip(Self.names, custodianIdentities).map { Custodian(name: $0, recipient: $1.recipient) }
        created = try await EpochCeremonies(registry: registry, station: "officer-bench").create(
            name: epoch, threshold: threshold, custodians: custodians, folder: scratch.path(folder))
    }

    /// Every custodian identity, as a bench would have them brought one by one.
    var allIdentities: [X25519Identity] { custodianIdentities }
}

/// Every k-element subset of `0..<n`.
func subsets(_ n: Int, _ k: Int) -> [[Int]] {
    guard k > 0 else { return [[]] }
    guard n >= k else { return [] }
    return subsets(n - 1, k - 1).map { $0 + [n - 1] } + subsets(n - 1, k)
}
