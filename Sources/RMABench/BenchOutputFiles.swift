/// The files a bench command leaves for the engineer: the saved slot and its public key, the
/// backup `keys load` makes, the public key `keys doctor` makes, a server key blob. The bench
/// decides their names and when they are written (a backup before the slot is overwritten, a new
/// public key before it is registered); the command line writes them under its rules (nothing
/// replaced without --force, modes set at creation).
public protocol BenchOutputFiles: Sendable {
    /// Throws when `path` may not be written: it exists and is not to be replaced.
    func requireWritable(_ path: String) throws
    /// Writes `bytes` to `path`; `secret`: key material, readable by its owner only.
    func write(_ path: String, _ bytes: [UInt8], secret: Bool) throws
}
