import Crypto

extension X25519Identity {
    /// The identity whose 32-byte X25519 scalar is `rawSecretKey` (age's `AGE-SECRET-KEY-1…` holds
    /// exactly these bytes, age-encryption.org/v1 "The X25519 recipient type"). For secrets that
    /// are rebuilt in memory, such as an escrow epoch's identity combined from Shamir shares.
    public init(rawSecretKey: [UInt8]) throws(AgeError) {
        guard rawSecretKey.count == 32, let key = try? Curve25519.KeyAgreement.PrivateKey(rawRepresentation: rawSecretKey) else {
            throw .invalidIdentity(line: nil, reason: "an X25519 identity holds 32 bytes")
        }
        self.init(privateKey: key)
    }

    /// The 32-byte scalar, lent to `body` and overwritten after it returns (to split it into
    /// shares, never to store it). Whatever `body` copies out, it must zero itself.
    public func withRawSecretKey<T>(_ body: ([UInt8]) throws -> T) rethrows -> T {
        var raw = Array(privateKey.rawRepresentation)
        defer { for index in raw.indices { raw[index] = 0 } }
        return try body(raw)
    }
}
