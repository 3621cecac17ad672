import FailurePolicy
import Registry

/// Why `keyline dashboard` will not start (or a page cannot be served).
public enum DashboardError: Error, Sendable, Equatable, CustomStringConvertible, ClassifiedError {
    /// The login could write, or belongs to a role that writes: the dashboard runs as an
    /// auditor-only login.
    case loginNotAuditorOnly(LoginAccess)
    /// `--listen` is not `HOST:PORT` with a port in 1...65535.
    case badListenAddress(String)
    /// A non-loopback address without `--token-file`.
    case tokenRequired(address: String)
    /// The token file could not be read, is readable by others, or holds no usable token.
    case badTokenFile(path: String, problem: String)
    /// The server could not bind or stopped with an error.
    case server(address: String, message: String)

    public var description: String {
        switch self {
        case .loginNotAuditorOnly(let access):
            var what: [String] = []
            if access.superuser { what.append("is a superuser") }
            if access.bypassesRowSecurity { what.append("bypasses row-level security") }
            let writers = access.roles.filter { $0 != "keyline_auditor" }
            if !writers.isEmpty { what.append("is a member of \(writers.joined(separator: ", "))") }
            if !access.roles.contains("keyline_auditor") { what.append("is not a member of keyline_auditor") }
            if !access.writableTables.isEmpty {
                what.append("can write \(access.writableTables.prefix(5).joined(separator: ", "))"
                            + (access.writableTables.count > 5 ? " and \(access.writableTables.count - 5) more tables" : ""))
            }
            return "login \(access.user) \(what.joined(separator: "; ")): the dashboard reads only, as an auditor-only login. "
                + "Connect as one (an administrator runs `keyline db grant LOGIN --role auditor`)."
        case .badListenAddress(let text):
            return "--listen \(text) is not HOST:PORT (e.g. 127.0.0.1:8080) with a port from 0 (any free one) to 65535"
        case .tokenRequired(let address):
            return "--listen \(address) is not a loopback address: other machines could read the floor, so give --token-file "
                + "FILE (mode 0600) with a token viewers present (Authorization: Bearer, or once in the /login form)"
        case .badTokenFile(let path, let problem):
            return "token file \(path): \(problem)"
        case .server(let address, let message):
            return "the dashboard could not serve on \(address): \(message)"
        }
    }

    public var failureClass: FailureClass {
        switch self {
        case .loginNotAuditorOnly: .needsOperator
        case .badListenAddress, .tokenRequired, .badTokenFile: .badInput
        case .server: .needsOperator
        }
    }
}
