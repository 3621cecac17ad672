import CommandReporting
import Simulator

// How the simulator's errors appear on keyline-sim's command line (CommandReporting's rules).

extension SimulatorError: ReportableError {
    public var kind: String { "simulator" }
    public var message: String { description }
    public var exit: KeylineExit {
        switch self {
        case .stateFile: .ioError
        case .busy, .disconnected: .unavailable
        default: .usage
        }
    }
}

extension StandInServerError: ReportableError {
    public var kind: String { "socket" }
    public var message: String { description }
    public var context: [String: String] { ["socket": socketPath] }
    public var exit: KeylineExit { .ioError }
}

extension SimulatedCloudError: ReportableError {
    public var kind: String { "simulatedCloud" }
    public var message: String { description }
    public var exit: KeylineExit {
        switch self {
        case .emptyToken, .badURL: .usage
        case .stateFile: .dataError
        case .listen: .ioError
        case .unreachable: .unavailable
        }
    }
}

extension SimulatedCloudFaultError: ReportableError {
    public var kind: String { "usage" }
    public var message: String { description }
    public var exit: KeylineExit { .usage }
}
