import RMABench

// How `keyline keys revoke|supersede` refusals appear on the command line.

extension KeyStatusError: ReportableError {
    public var kind: String {
        switch self {
        case .badDeviceID: "badDeviceID"
        case .reasonRequired: "reasonRequired"
        case .noActiveKey: "noActiveKey"
        case .severalProducts: "productNeeded"
        }
    }

    public var message: String { description }

    public var context: [String: String] {
        switch self {
        case .badDeviceID(let id), .noActiveKey(let id, nil), .severalProducts(let id, _): ["device": id]
        case .noActiveKey(let id, let product?): ["device": id, "product": product]
        case .reasonRequired: [:]
        }
    }

    public var exit: KeylineExit {
        switch self {
        case .badDeviceID, .reasonRequired, .severalProducts: .usage
        case .noActiveKey: .dataError
        }
    }
}
