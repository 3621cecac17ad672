import ParticlePlatform

// How the platform table's errors appear on the command line.

extension FirmwareModuleError: ReportableError {
    public var kind: String { "badFirmware" }
    public var message: String { description }
    public var exit: KeylineExit { .dataError }
}
