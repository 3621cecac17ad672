import Age
import Escrow
import Foundation
import Registry
import Shamir

/// One custodian: a name the registry shows and the age recipient their share is encrypted to.
public struct Custodian: Sendable, Hashable {
    public let name: String
    public let recipient: X25519Recipient

    /// `name=age1…`, as the command line takes it.
    public init(_ text: String) throws(CustodyError) {
        let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2, Self.isName(parts[0]) else {
            throw .invalidCustodians("\"\(text)\" is not NAME=age1… (a name of 1-64 letters, digits, '.', '-', '_' or '@')")
        }
        guard let recipient = try? X25519Recipient(parts[1]) else {
            throw .invalidCustodians("\(parts[0])'s recipient is not an age X25519 recipient (age1…)")
        }
        self.init(name: parts[0], recipient: recipient)
    }

    public init(name: String, recipient: X25519Recipient) {
        self.name = name
        self.recipient = recipient
    }

    static func isName(_ text: String) -> Bool {
        (1...64).contains(text.utf8.count) && text.utf8.first.map { $0 != UInt8(ascii: ".") && $0 != UInt8(ascii: "-") } == true
            && text.utf8.allSatisfy { (48...57).contains($0) || (65...90).contains($0) || (97...122).contains($0) || $0 == 45 || $0 == 46 || $0 == 95 || $0 == 64 }
    }
}

/// An epoch identity split into share files, one per custodian, ready to write and record.
struct EpochSplit: Sendable {
    struct ShareFile: Sendable {
        let name: String
        let ciphertext: [UInt8]
        let record: NewCustodyShare
    }

    let epochName: String
    let recipient: String
    let threshold: Int
    let files: [ShareFile]

    /// Splits `identity` `threshold`-of-custodians; each share document is age-encrypted to its
    /// custodian alone (whoever runs the ceremony never holds a share in the clear on disk).
    init(_ identity: X25519Identity, epochName: String, threshold: Int, custodians: [Custodian], fileTag: String? = nil) throws {
        try Self.check(epochName: epochName, threshold: threshold, custodians: custodians)
        var shares = try identity.withRawSecretKey { try Shamir.split($0, threshold: threshold, count: custodians.count) }
        defer { for index in shares.indices { shares[index].zero() } }
        let recipient = identity.recipient.description
        files = try zip(shares, custodians).map { share, custodian in
            var document = ShareDocument(epoch: epochName, epochRecipient: recipient, threshold: threshold,
                                         shareCount: custodians.count, x: Int(share.x), custodian: custodian.name, share: share.y)
            defer { document.zero() }
            var plaintext = document.encoded()
            defer { for index in plaintext.indices { plaintext[index] = 0 } }
            let ciphertext = try Age.encrypt(plaintext, to: [custodian.recipient])
            return ShareFile(name: "\(epochName)\(fileTag.map { ".\($0)" } ?? "").share-\(share.x)-\(custodian.name).age", ciphertext: ciphertext,
                             record: NewCustodyShare(x: Int(share.x), custodian: custodian.name,
                                                     custodianRecipient: custodian.recipient.description,
                                                     fileSHA256: Age.sha256(ciphertext), shareSHA256: Age.sha256(plaintext)))
        }
        self.epochName = epochName
        self.recipient = recipient
        self.threshold = threshold
    }

    static func check(epochName: String, threshold: Int, custodians: [Custodian]) throws(CustodyError) {
        guard EscrowObjectKey.isPathSegment(epochName) else { throw .invalidEpochName(epochName) }
        guard threshold >= 2 else {
            throw .invalidCustodians("a threshold of \(threshold): at least 2 (one custodian alone would hold the identity)")
        }
        guard custodians.count >= threshold, custodians.count <= 255 else {
            throw .invalidCustodians("\(custodians.count) custodians for a threshold of \(threshold): give between \(threshold) and 255")
        }
        var names = Set<String>(), recipients = Set<X25519Recipient>()
        for custodian in custodians {
            guard names.insert(custodian.name).inserted else { throw .invalidCustodians("\(custodian.name) is named twice") }
            guard recipients.insert(custodian.recipient).inserted else {
                throw .invalidCustodians("\(custodian.name)'s recipient is another custodian's too: each custodian holds their own key")
            }
        }
    }

    var newEpoch: NewEscrowEpoch {
        NewEscrowEpoch(name: epochName, recipient: recipient, threshold: threshold, shares: files.map(\.record))
    }

    /// Writes the share files into `folder` (made 0700 if missing), each created exclusively,
    /// mode 0600, and flushed with its folder. Refuses before writing anything if one exists.
    /// Returns their paths. Blocking: call it off the cooperative pool.
    func writeFiles(into folder: String) throws -> [String] {
        if mkdir(folder, 0o700) != 0 && errno != EEXIST { throw CustodyError.shareFileWrite(path: folder, errno: errno) }
        let paths = files.map { (folder as NSString).appendingPathComponent($0.name) }
        for path in paths where access(path, F_OK) == 0 { throw CustodyError.shareFileExists(path) }
        for (file, path) in zip(files, paths) {
            let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            guard fd >= 0 else {
                throw errno == EEXIST ? CustodyError.shareFileExists(path) : CustodyError.shareFileWrite(path: path, errno: errno)
            }
            defer { close(fd) }
            var written = 0
            while written < file.ciphertext.count {
                let count = file.ciphertext[written...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else { throw CustodyError.shareFileWrite(path: path, errno: errno) }
                written += count
            }
            guard fsync(fd) == 0 else { throw CustodyError.shareFileWrite(path: path, errno: errno) }
        }
        let directory = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directory >= 0 { fsync(directory); close(directory) }
        return paths
    }
}
