import DeviceKeys
import Escrow
import LocalFiles
import ParticleDevice
import ParticlePlatform

/// What `keyline keys server|address` do on an attached device (particle-cli-keys.md §4), minus
/// particle-cli's bugs: a PEM server key works on the first run (no intermediate .der), a
/// protected device is refused, and the blob written is read back.
public enum ServerKeySlotIO {
    /// `keys server [FILE] [OUTPUT]`: the blob for the chosen device's platform, from `keyFile`
    /// (a server public key or a full-size blob; default: Particle's), with `address` and `port`;
    /// saved to `outputFile` when given (checked before the device is opened), then written to the
    /// device and read back. The device stays in DFU mode.
    public static func write(keyFile: String?, address: ServerAddress?, port: UInt16?, device deviceID: String?,
                             on bus: BenchBus, saveTo outputFile: String?,
                             files: any BenchOutputFiles) async throws -> WrittenServerKey {
        let keyBytes = try await offPool {
            let bytes = try keyFile.map { try InputFile.read($0, limit: KeyFile.maximumFileSize, what: "a server key file") }
            if let outputFile { try files.requireWritable(outputFile) }
            return bytes
        }
        return try await bus.withDevice(deviceID) { device in
            if BenchDevices.isProtected(device) { throw DeviceKeyCommandError.protected(deviceID: device.deviceID) }
            let blob: ServerKeyBlob
            do {
                blob = try ServerKeyBlob(platform: device.platform, keyFile: keyBytes, address: address, port: port)
            } catch {
                throw keyFile.map { FileContentError(path: $0, error: error) } ?? error
            }
            if let outputFile { try await offPool { try files.write(outputFile, blob.bytes, secret: false) } }
            try await device.writeServerKeyBlob(blob)
            guard try await device.readServerKeyBlob() == blob.bytes else {
                throw DeviceKeyCommandError.readBackDiffers(deviceID: device.deviceID)
            }
            return WrittenServerKey(deviceID: device.deviceID, platform: device.platform, blob: blob)
        }
    }

    /// `keys address` without a file: the chosen device's server key slot, decoded (blank: the
    /// device uses its built-in key and address).
    public static func read(device deviceID: String?, on bus: BenchBus) async throws -> (deviceID: String, slot: ServerKeySlotReading) {
        try await bus.withDevice(deviceID) { device in
            if BenchDevices.isProtected(device) { throw DeviceKeyCommandError.protected(deviceID: device.deviceID) }
            return (device.deviceID, try ServerKeySlotReading(slot: try await device.readServerKeyBlob(), platform: device.platform))
        }
    }
}

/// What `keys server` wrote to a device.
public struct WrittenServerKey: Sendable {
    public var deviceID: String
    public var platform: Platform
    public var blob: ServerKeyBlob
}
