import Escrow
import Foundation
import LocalFiles

/// Stores opened once per location for a long run over many objects (a rotation, an audit): an
/// S3 store reads its credentials and makes its HTTP client when opened, so opening one per object
/// would repeat that work for every backup. Opening happens off the cooperative pool (it reads
/// files); concurrent first requests for one location share one opening.
public actor OpenedEscrowStores {
    private var opening: [String: Task<any EscrowStore, any Error>] = [:]
    private let environment: [String: String]

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.environment = environment
    }

    public func store(_ location: String) async throws -> any EscrowStore {
        if let task = opening[location] { return try await task.value }
        let environment = environment
        let task = Task { try await offPool { try EscrowStores.open(location, environment: environment) } }
        opening[location] = task
        do {
            return try await task.value
        } catch {
            // A failed opening (a missing credential) is tried again next time, not remembered.
            opening[location] = nil
            throw error
        }
    }
}
