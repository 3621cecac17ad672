import Dashboard

// How `keyline dashboard`'s errors appear on the command line (kind, message, context, exit code).

extension DashboardError: ReportableError {
    public var kind: String {
        switch self {
        case .loginNotAuditorOnly: "dashboardLoginNotReadOnly"
        case .badListenAddress: "badListenAddress"
        case .tokenRequired: "dashboardTokenRequired"
        case .badTokenFile: "badTokenFile"
        case .server: "dashboardServerFailed"
        }
    }

    public var message: String { description }

    public var context: [String: String] {
        switch self {
        case .loginNotAuditorOnly(let access): ["login": access.user]
        case .badListenAddress(let address), .tokenRequired(let address): ["listen": address]
        case .badTokenFile(let path, _): ["file": path]
        case .server(let address, _): ["listen": address]
        }
    }

    public var exit: KeylineExit {
        switch self {
        case .loginNotAuditorOnly: .noPermission
        case .badListenAddress, .tokenRequired: .usage
        case .badTokenFile: .configuration
        case .server: .unavailable
        }
    }
}
