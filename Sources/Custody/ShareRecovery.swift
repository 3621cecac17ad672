import Age
import Escrow
import Foundation
import LocalFiles
import Registry
import Shamir

/// An epoch identity rebuilt from custodians' shares, for one session only. Its description
/// shows the epoch and the shares, never the identity.
public struct RecoveredEpoch: Sendable, CustomStringConvertible {
    public let epoch: EscrowEpoch
    public let identity: X25519Identity
    /// The recorded shares that were combined (their ids and custodians go into the ceremony record).
    public let shares: [CustodyShare]

    public var description: String {
        "epoch \(epoch.name) (\(epoch.recipient)) from the shares of \(shares.map { "\($0.custodian) (share \($0.x))" }.joined(separator: ", "))"
    }
}

/// Asks a custodian for their identity when no identity given opens their share file (keyline
/// prompting at the bench); nil when there is nobody to ask.
public typealias CustodianIdentityPrompt = @Sendable (_ path: String, _ custodian: String) async throws -> X25519Identity?

/// Recovery of an epoch identity from M share files. Each file is either the age file a
/// custodian was given (opened here with an identity given or prompted for) or the document
/// the custodian decrypted on their own machine (`age -d`). Every share is checked on its own
/// against the registry's record — the file's and the document's SHA-256, its epoch, its set,
/// not a repeat — before any is combined; the combined identity must have the epoch's recorded
/// recipient. A share that fails is named and never used.
public struct ShareRecovery: Sendable {
    public let registry: RegistryDatabase
    /// Custodian identities brought to the bench (`--custodian-identity`), tried on every share file.
    public var identities: [X25519Identity]
    public var prompt: CustodianIdentityPrompt?

    public init(registry: RegistryDatabase, identities: [X25519Identity] = [], prompt: CustodianIdentityPrompt? = nil) {
        self.registry = registry
        self.identities = identities
        self.prompt = prompt
    }

    /// Combines the shares in `paths` into the identity of `epochName` (or of the epoch the
    /// first good share belongs to). Throws naming every share refused, or too few shares.
    public func recover(_ paths: [String], epochName: String? = nil) async throws -> RecoveredEpoch {
        guard !paths.isEmpty else { throw CustodyError.noShares }
        var wanted: EscrowEpoch?
        if let epochName {
            guard let epoch = try await registry.epoch(named: epochName) else { throw CustodyError.unknownEpoch(epochName) }
            wanted = epoch
        }
        var problems: [ShareProblem] = []
        var accepted: [(path: String, record: RecordedShare, document: ShareDocument)] = []
        defer { for index in accepted.indices { accepted[index].document.zero() } }
        for path in paths {
            switch try await check(path) {
            case .failure(let problem):
                problems.append(problem)
            case .success(let (record, document)):
                var document = document
                let epoch = wanted ?? record.epoch
                wanted = epoch
                if record.epoch.id != epoch.id {
                    problems.append(ShareProblem(path: path, kind: .otherEpoch, detail:
                        "it is \(record.share.custodian)'s share \(record.share.x) of epoch \(record.epoch.name), not of epoch \(epoch.name)"))
                } else if record.set.status != .active {
                    problems.append(ShareProblem(path: path, kind: .retiredSet, detail:
                        "it is \(record.share.custodian)'s share \(record.share.x) of a share set of epoch \(epoch.name) that a reshare replaced; bring a share of the current set"))
                } else if let first = accepted.first(where: { $0.record.share.id == record.share.id }) {
                    problems.append(ShareProblem(path: path, kind: .duplicate, detail:
                        "it is share \(record.share.x) (\(record.share.custodian)) again, already given as \(first.path): each share counts once"))
                } else {
                    accepted.append((path, record, document))
                    continue
                }
                document.zero()
            }
        }
        guard problems.isEmpty else { throw CustodyError.sharesRefused(problems) }
        let epoch = wanted!
        let threshold = accepted[0].record.set.threshold
        guard accepted.count >= threshold else {
            throw CustodyError.tooFewShares(epoch: epoch.name, have: accepted.count, need: threshold)
        }
        var secret = try Shamir.combine(accepted.map { Shamir.Share(x: UInt8($0.document.x), y: $0.document.share) })
        defer { for index in secret.indices { secret[index] = 0 } }
        let identity = try X25519Identity(rawSecretKey: secret)
        guard identity.recipient.description == epoch.recipient else {
            throw CustodyError.combinationMismatch(epoch: epoch.name, recipient: epoch.recipient,
                                                   combined: identity.recipient.description, paths: accepted.map(\.path))
        }
        return RecoveredEpoch(epoch: epoch, identity: identity, shares: accepted.map(\.record.share))
    }

    /// One share file, read, opened if encrypted, and matched to its record (file and document hashes).
    private func check(_ path: String) async throws -> Result<(RecordedShare, ShareDocument), ShareProblem> {
        let bytes: [UInt8]
        do {
            bytes = try await offPool { try InputFile.read(path, limit: 64 * 1024, what: "a share file") }
        } catch {
            return .failure(ShareProblem(path: path, kind: .unreadable, detail: "\(error)"))
        }
        if bytes.first == UInt8(ascii: "{") {
            // A document the custodian decrypted with `age -d`: only its own hash can vouch for it.
            guard let record = try await registry.recordedShare(shareSHA256: Age.sha256(bytes)),
                  let document = ShareDocument.decode(bytes), Self.matches(document, record) else {
                return .failure(ShareProblem(path: path, kind: .unknown, detail:
                    "its SHA-256 matches no share keyline made: it was altered, or it is not a keyline share"))
            }
            return .success((record, document))
        }
        guard let record = try await registry.recordedShare(fileSHA256: Age.sha256(bytes)) else {
            return .failure(ShareProblem(path: path, kind: .unknown, detail:
                "its SHA-256 matches no share file keyline made: it was altered, or it is not a keyline share file"))
        }
        guard var opened = try await decrypt(bytes, path: path, custodian: record.share.custodian) else {
            return .failure(ShareProblem(path: path, kind: .notOpened, detail:
                "no custodian identity given opens it: it is \(record.share.custodian)'s share \(record.share.x) (recipient \(record.share.custodianRecipient))"))
        }
        defer { for index in opened.indices { opened[index] = 0 } }
        guard Age.sha256(opened) == record.share.shareSHA256, let document = ShareDocument.decode(opened),
              Self.matches(document, record) else {
            return .failure(ShareProblem(path: path, kind: .unknown, detail:
                "the share inside does not match the one recorded for \(record.share.custodian)'s share \(record.share.x)"))
        }
        return .success((record, document))
    }

    /// The document's own claims agree with its record (they hash-matched; this catches a
    /// registry row pointing at the wrong share).
    static func matches(_ document: ShareDocument, _ record: RecordedShare) -> Bool {
        document.x == record.share.x && document.epochRecipient == record.epoch.recipient
            && document.custodian == record.share.custodian && document.threshold == record.set.threshold
    }

    private func decrypt(_ file: [UInt8], path: String, custodian: String) async throws -> [UInt8]? {
        if !identities.isEmpty, let plaintext = try? Age.decrypt(file, identities: identities) { return plaintext }
        guard let prompt, let identity = try await prompt(path, custodian) else { return nil }
        return try? Age.decrypt(file, identities: [identity])
    }
}

extension ShareRecovery {
    /// A recovery with the custodian identity files given at the bench (read off the pool).
    public static func withIdentityFiles(_ paths: [String], registry: RegistryDatabase,
                                         prompt: CustodianIdentityPrompt? = nil) async throws -> ShareRecovery {
        let identities = paths.isEmpty ? [] : try await offPool {
            try EscrowKeyFiles.identities(paths, what: "a custodian's age identity file")
        }
        return ShareRecovery(registry: registry, identities: identities, prompt: prompt)
    }
}
