import FailurePolicy
import Registry

/// `keyline keys revoke` and `keyline keys supersede` (issue 21, item 11): a registered key taken
/// out of use with a reason and, where there is one, a ticket. The registry's
/// `keyline_change_key_status` checks the login (a bench may supersede; only an administrator
/// revokes) and records who, where, when and why on the registration and as an event.
public struct KeyStatusRequest: Sendable, Hashable {
    public var deviceID: String
    /// The product; nil when the device has an active key in exactly one product.
    public var productID: String?
    public var reason: String
    public var ticket: String?

    public init(deviceID: String, productID: String? = nil, reason: String, ticket: String? = nil) {
        self.deviceID = deviceID.lowercased()
        self.productID = productID
        self.reason = reason
        self.ticket = ticket
    }
}

/// Why a status change was refused before the registry was asked.
public enum KeyStatusError: Error, Sendable, Equatable, CustomStringConvertible, ClassifiedError {
    case badDeviceID(String)
    case reasonRequired
    /// The device has no active key (in the product, when one was named).
    case noActiveKey(deviceID: String, productID: String?)
    /// Active keys in several products: name one.
    case severalProducts(deviceID: String, products: [String])

    public var description: String {
        switch self {
        case .badDeviceID(let id):
            "\(id) is not a device ID (24 hexadecimal digits)"
        case .reasonRequired:
            "a reason is required (--reason TEXT): it is recorded with the change"
        case .noActiveKey(let device, let product):
            "device \(device) has no active key" + (product.map { " in product \($0)" } ?? "")
                + "; nothing to change (see `keyline audit` for its keys)"
        case .severalProducts(let device, let products):
            "device \(device) has active keys in several products (\(products.joined(separator: ", "))); name one with --product"
        }
    }

    /// The operator's input, every one: the same command fails the same way until it changes.
    public var failureClass: FailureClass { .badInput }
}

public enum KeyStatusChange {
    /// Marks the device's active key `status` (superseded or revoked) as `station`, and returns
    /// the registration as changed.
    public static func change(_ request: KeyStatusRequest, to status: RegistrationStatus,
                              station given: String?) async throws -> KeyRegistration {
        precondition(status != .active, "a key only leaves active")
        guard request.deviceID.utf8.count == 24, request.deviceID.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) else {
            throw KeyStatusError.badDeviceID(request.deviceID)
        }
        guard !request.reason.allSatisfy(\.isWhitespace) else { throw KeyStatusError.reasonRequired }
        let station = BenchStation(given)
        let action = status == .revoked ? "revoke keys" : "supersede keys"
        let registry = try await station.registry(action: action)
        let product = try await productOfActiveKey(request, registry: registry)
        let ticket = request.ticket.flatMap { $0.isEmpty ? nil : $0 }
        do {
            return status == .revoked
                ? try await registry.revokeKey(productID: product, deviceID: request.deviceID, reason: request.reason,
                                               ticket: ticket, station: station.name)
                : try await registry.supersedeKey(productID: product, deviceID: request.deviceID, reason: request.reason,
                                                  ticket: ticket, station: station.name)
        } catch RegistryError.noActiveKey {
            // Changed by someone else since it was read.
            throw KeyStatusError.noActiveKey(deviceID: request.deviceID, productID: product)
        }
    }

    static func productOfActiveKey(_ request: KeyStatusRequest, registry: RegistryDatabase) async throws -> String {
        var active = try await registry.activeRegistrations(deviceID: request.deviceID)
        if let product = request.productID { active = active.filter { $0.productID == product } }
        guard let first = active.first else {
            throw KeyStatusError.noActiveKey(deviceID: request.deviceID, productID: request.productID)
        }
        guard active.count == 1 else {
            throw KeyStatusError.severalProducts(deviceID: request.deviceID, products: active.map(\.productID))
        }
        return first.productID
    }
}
