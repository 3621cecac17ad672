import Age
import ParticlePlatform

/// A pipeline file, resolved and validated: everything the runner needs, nothing left to look up.
/// Made only by `PipelineLoader.load`, after every problem of the file has been reported.
public struct PipelineDefinition: Sendable {
    public var name: String
    /// Absolute path of the pipeline file.
    public var sourcePath: String
    public var product: (id: String, name: String)
    public var platform: Platform
    /// In the order the file lists them (the flash order).
    public var images: [FirmwareImage]
    /// What goes into the server key slot: Particle's key or a file, with the host and port.
    public var serverKey: ServerKeyBlob
    public var keyMode: KeyMode
    public var escrow: EscrowSettings
    /// Devices provisioned at the same time.
    public var concurrency: Int
    public var retries: RetryPolicy
    public var selection: DeviceSelection
    /// Recorded on jobs and backups; default: the host name.
    public var station: String
    /// A libpq connection string or URI; nil: libpq's environment (DATABASE_URL, PG*).
    public var database: String?
    /// The `cloud:` section: which keys the Particle cloud must learn and how they are sent.
    public var cloud = CloudSettings()
    /// The `ports:` allow-list: nil permits every port (PortAllowList.swift).
    public var ports: PortAllowList?

    public init(name: String, sourcePath: String, product: (id: String, name: String), platform: Platform,
                images: [FirmwareImage], serverKey: ServerKeyBlob, keyMode: KeyMode, escrow: EscrowSettings,
                concurrency: Int, retries: RetryPolicy, selection: DeviceSelection, station: String, database: String?) {
        self.name = name
        self.sourcePath = sourcePath
        self.product = product
        self.platform = platform
        self.images = images
        self.serverKey = serverKey
        self.keyMode = keyMode
        self.escrow = escrow
        self.concurrency = concurrency
        self.retries = retries
        self.selection = selection
        self.station = station
        self.database = database
    }
}

/// One image to write over DFU alt 0.
public struct FirmwareImage: Sendable, Hashable {
    /// Absolute path of the file it was read from.
    public var path: String
    /// The whole file.
    public var bytes: [UInt8]
    /// Always 0 (internal flash) today; kept so a later external-flash image needs no new type.
    public var alt: UInt8
    /// Where `payload` is written.
    public var address: UInt32
    /// The module header, or nil for a raw image (no module prefix; `address` given in the file).
    public var module: FirmwareModule?

    public init(path: String, bytes: [UInt8], alt: UInt8, address: UInt32, module: FirmwareModule?) {
        self.path = path
        self.bytes = bytes
        self.alt = alt
        self.address = address
        self.module = module
    }

    /// The bytes a DFU download writes: without the prefix for DROP_MODULE_INFO modules
    /// (particle-firmware-format.md §1.5), else the whole file.
    public var payload: ArraySlice<UInt8> { module?.dfuPayload(of: bytes) ?? bytes[...] }
}

/// Where the device key comes from.
public enum KeyMode: String, Sendable, Hashable, CaseIterable, Codable {
    /// keyline generates the key with OpenSSL and writes it (guarded: only into a blank slot).
    case host
    /// The key Device OS generated at first boot is used as it is.
    case device
}

public struct EscrowSettings: Sendable, Hashable {
    /// Every backup is encrypted to all of these (any one identity decrypts).
    public var recipients: [X25519Recipient]
    /// An absolute directory path, or a URI such as `s3://bucket/prefix`.
    public var store: String

    public init(recipients: [X25519Recipient], store: String) {
        self.recipients = recipients
        self.store = store
    }
}

/// Retries of a retryable step failure, with exponential backoff.
public struct RetryPolicy: Sendable, Hashable {
    /// Attempts per step, the first included (1 = no retry).
    public var attempts: Int
    public var initialBackoff: Duration
    public var maxBackoff: Duration

    public init(attempts: Int, initialBackoff: Duration, maxBackoff: Duration) {
        self.attempts = attempts
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
    }

    public static let `default` = RetryPolicy(attempts: 3, initialBackoff: .seconds(1), maxBackoff: .seconds(30))

    /// The pause before attempt `attempt` (2, 3, …): doubling from `initialBackoff`, capped.
    public func backoff(beforeAttempt attempt: Int) -> Duration {
        var delay = initialBackoff
        var n = 2
        while n < attempt, delay < maxBackoff {
            delay = delay * 2
            n += 1
        }
        return min(delay, maxBackoff)
    }
}

/// Which attached devices a run takes. Both nil: every device of the pipeline's platform.
public struct DeviceSelection: Sendable, Hashable {
    /// Device IDs (USB serial numbers, 24 lowercase hex digits).
    public var serials: [String]?
    /// USB port paths such as `1-2.3`.
    public var ports: [String]?

    public init(serials: [String]? = nil, ports: [String]? = nil) {
        self.serials = serials
        self.ports = ports
    }

    public static let all = DeviceSelection()

    /// Whether a device at `port` with `serial` is selected (both lists apply when both are given).
    public func includes(serial: String, port: String?) -> Bool {
        if let serials, !serials.contains(serial) { return false }
        if let ports {
            guard let port, ports.contains(port) else { return false }
        }
        return true
    }
}

/// Values from the command line, which win over the file (per-station settings and secrets).
/// Relative paths here are relative to the current directory, not the pipeline's folder.
public struct PipelineOverrides: Sendable, Hashable {
    public var database: String?
    public var store: String?
    public var recipientsFile: String?
    public var station: String?
    public var concurrency: Int?

    public init(database: String? = nil, store: String? = nil, recipientsFile: String? = nil,
                station: String? = nil, concurrency: Int? = nil) {
        self.database = database
        self.store = store
        self.recipientsFile = recipientsFile
        self.station = station
        self.concurrency = concurrency
    }

    public static let none = PipelineOverrides()
}
