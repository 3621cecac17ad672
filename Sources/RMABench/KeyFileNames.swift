import Foundation
import ParticlePlatform

/// The key file names of `particle keys` (particle-cli-keys.md §1), so files move between the two
/// tools: NAME.pem, NAME.pub.pem and NAME.der for one key pair.
public enum KeyFileNames {
    /// particle-cli's `filenameNoExt`: "x.pem", "x.pub.pem" and "x.der" name the same key pair "x".
    public static func base(_ name: String) -> String {
        for suffix in [".pub.pem", ".pem", ".der"] where name.hasSuffix(suffix) {
            return String(name.dropLast(suffix.count))
        }
        return name
    }

    /// The file `keys send` reads: the one given (the device ID without one), else NAME.pub.pem.
    static func sent(_ file: String?, deviceID: String) -> String {
        let path = file ?? deviceID
        return FileManager.default.fileExists(atPath: path) ? path : base(path) + ".pub.pem"
    }

    /// Where `keys load` saves what the slot held before: backup_<alg>_NAME.der, in the working directory.
    static func loadBackup(base: String, platform: Platform) -> String {
        "backup_\(platform.keyAlgorithm.rawValue)_\((base as NSString).lastPathComponent).der"
    }

    /// The public half of the key `keys doctor` makes: DEVICE_ID_<alg>_new.pub.pem.
    static func doctorPublicKey(deviceID: String, platform: Platform) -> String {
        "\(deviceID)_\(platform.keyAlgorithm.rawValue)_new.pub.pem"
    }

    /// NAME.pub.pem beside NAME.der.
    static func publicKey(of der: String) -> String {
        String(der.dropLast(".der".count)) + ".pub.pem"
    }
}
