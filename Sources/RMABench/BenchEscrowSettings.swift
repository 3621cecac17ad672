import Escrow
import EscrowS3
import FailurePolicy
import Foundation
import Registry

/// Where a bench escrows keys and under which name: the line's store and recipients
/// (KEYLINE_ESCROW_STORE, KEYLINE_RECIPIENTS) unless given, and the bench's name.
public struct BenchEscrowSettings: Sendable {
    /// A directory or s3://bucket/prefix.
    public var store: String?
    public var recipientFiles: [String]
    public var station: String?

    public init(store: String? = nil, recipientFiles: [String] = [], station: String? = nil) {
        self.store = store
        self.recipientFiles = recipientFiles
        self.station = station
    }

    var bench: BenchStation { BenchStation(station) }

    /// The store and recipients opened for `registry`; the store is named before any recipients
    /// file is read.
    func escrow(_ registry: RegistryDatabase, station: String) throws -> BenchEscrow {
        let environment = ProcessInfo.processInfo.environment
        guard let storeURI = store ?? environment["KEYLINE_ESCROW_STORE"], !storeURI.isEmpty else {
            throw BenchEscrowError.noEscrowStore
        }
        let files = recipientFiles.isEmpty ? [environment["KEYLINE_RECIPIENTS"]].compactMap { $0 }.filter { !$0.isEmpty } : recipientFiles
        // No file at all is refused there (AgeError.noRecipients), as by `escrow encrypt`.
        let recipients = try EscrowKeyFiles.recipients([], files: files)
        return BenchEscrow(registry: registry, store: try EscrowStores.open(storeURI), recipients: recipients, station: station)
    }
}

/// Why a bench could not escrow a key; nothing was escrowed or written.
public enum BenchEscrowError: Error, Sendable, Hashable, CustomStringConvertible, ClassifiedError {
    /// Neither --store nor KEYLINE_ESCROW_STORE names a store.
    case noEscrowStore
    /// A private key to escrow for a device that is not attached, and no --platform to record.
    case platformNeeded(deviceID: String)

    public var description: String {
        switch self {
        case .noEscrowStore: "no escrow store: give --store DIR|s3://bucket/prefix or set KEYLINE_ESCROW_STORE"
        case .platformNeeded(let id): "device \(id) is not attached: give --platform to escrow its key"
        }
    }

    public var failureClass: FailureClass {
        switch self {
        case .noEscrowStore: .needsOperator
        case .platformNeeded: .badInput
        }
    }
}
