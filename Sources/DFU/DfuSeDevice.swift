import DeviceBus

/// An opened DfuSe device: its descriptors, alternate settings and memory layouts, read once
/// through standard GET_DESCRIPTOR requests. Operations live in DFULoad.swift.

/// One alternate setting of the DFU interface with its `iInterface` string and parsed layout.
public struct DfuSeAlternateSetting: Sendable, Hashable {
    public var alt: UInt8
    public var name: String
    /// nil when the string is not a DfuSe layout.
    public var layout: DfuSeMemoryLayout?

    public init(alt: UInt8, name: String, layout: DfuSeMemoryLayout?) {
        self.alt = alt
        self.name = name
        self.layout = layout
    }
}

/// Bytes done of bytes total, reported after each transfer block.
public struct DFUProgress: Sendable, Hashable {
    public enum Phase: String, Sendable, Hashable { case erasing, writing, reading, verifying }
    public var phase: Phase
    public var bytesDone: Int
    public var totalBytes: Int

    public init(phase: Phase, bytesDone: Int, totalBytes: Int) {
        self.phase = phase
        self.bytesDone = bytesDone
        self.totalBytes = totalBytes
    }
}

public typealias DFUProgressHandler = @Sendable (DFUProgress) -> Void

public struct DfuSeDevice: Sendable {
    public let interface: DFUInterface
    public let device: USBDeviceDescriptor
    public let configuration: USBConfiguration
    public let functional: DFUFunctionalDescriptor
    public let alternateSettings: [DfuSeAlternateSetting]
    public let serialNumber: String?
    public let productName: String?
    /// wTransferSize: the chunk for UPLOAD/DNLOAD and the block-number address unit.
    public let transferSize: Int

    public var transport: any ControlTransport { interface.transport }

    /// Reads the descriptors and checks this is a DfuSe device in DFU mode (on the device's thread,
    /// one hand-off for the whole sequence).
    public static func open(_ transport: any ControlTransport, interfaceNumber: UInt8 = 0,
                            requestTimeout: Duration = .seconds(5)) async throws(DFUError) -> DfuSeDevice {
        try await transport.withBlockingControl { (control) throws(DFUError) -> DfuSeDevice in
            try open(control, transport: transport, interfaceNumber: interfaceNumber, requestTimeout: requestTimeout)
        }
    }

    /// The same, on the device's thread: `control` is `transport`'s synchronous side.
    public static func open(_ control: any BlockingControl, transport: any ControlTransport, interfaceNumber: UInt8 = 0,
                            requestTimeout: Duration = .seconds(5)) throws(DFUError) -> DfuSeDevice {
        let reader = USBDescriptorSession(control: control)
        func step<T>(_ body: () throws(DFUError.Reason) -> T) throws(DFUError) -> T {
            do { return try body() } catch { throw DFUError(operation: .readDescriptors, reason: error) }
        }
        let device = try step { () throws(DFUError.Reason) in try reader.deviceDescriptor() }
        let configuration = try step { () throws(DFUError.Reason) in try reader.configuration() }
        let dfuInterfaces = configuration.interfaces.filter { $0.interfaceNumber == interfaceNumber && $0.isDFU }
        guard !dfuInterfaces.isEmpty else {
            throw DFUError(operation: .readDescriptors, reason: .descriptor("interface \(interfaceNumber) is not a DFU interface"))
        }
        guard dfuInterfaces.allSatisfy(\.isDFUMode) else {
            throw DFUError(operation: .readDescriptors, reason: .notInDFUMode(.appIdle))
        }
        guard let functional = configuration.dfuFunctional else {
            throw DFUError(operation: .readDescriptors, reason: .descriptor("no DFU functional descriptor in the configuration"))
        }
        guard functional.transferSize > 0 else {
            throw DFUError(operation: .readDescriptors, reason: .descriptor("DFU functional descriptor has wTransferSize 0"))
        }
        var alts: [DfuSeAlternateSetting] = []
        for descriptor in dfuInterfaces {
            let name = try step { () throws(DFUError.Reason) in try reader.string(index: descriptor.stringIndex) } ?? ""
            alts.append(DfuSeAlternateSetting(alt: descriptor.alternateSetting, name: name,
                                              layout: try? DfuSeMemoryLayout(parsing: name)))
        }
        let serial = try step { () throws(DFUError.Reason) in try reader.string(index: device.serialNumberIndex) }
        let product = try step { () throws(DFUError.Reason) in try reader.string(index: device.productIndex) }
        return DfuSeDevice(interface: DFUInterface(transport: transport, number: interfaceNumber, timeout: requestTimeout),
                           device: device, configuration: configuration, functional: functional,
                           alternateSettings: alts.sorted { $0.alt < $1.alt }, serialNumber: serial, productName: product,
                           transferSize: Int(functional.transferSize))
    }

    public func layout(alt: UInt8) throws(DFUError) -> DfuSeMemoryLayout {
        guard let setting = alternateSettings.first(where: { $0.alt == alt }) else {
            throw DFUError(operation: .selectAlternateSetting, alt: alt,
                           reason: .descriptor("the device has no alternate setting \(alt) (it has \(alternateSettings.map(\.alt)))"))
        }
        guard let layout = setting.layout else {
            throw DFUError(operation: .selectAlternateSetting, alt: alt,
                           reason: .descriptor("alt \(alt) name \"\(setting.name)\" is not a DfuSe memory layout"))
        }
        return layout
    }

    /// Whether the device reports Protected Device mode on this alt.
    public func isProtected(alt: UInt8) -> Bool {
        (try? layout(alt: alt))?.isProtected ?? false
    }
}
