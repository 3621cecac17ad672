/// The release of keyline: `keyline --version` prints it and `make package` names the station's
/// Debian package after that output, so this is the one place the version is written.
enum KeylineVersion {
    static let current = "0.1.0"
}
