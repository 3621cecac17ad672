import FailurePolicy

/// Why a key could not be made, read or used. Each case is a distinct failure a station engineer
/// can act on; none carries key bytes.
public enum DeviceKeyError: Error, Sendable, Equatable, CustomStringConvertible {
    case empty
    /// Neither PEM nor a DER key structure.
    case notAKey
    /// The DER header promises more bytes than there are.
    case truncated(encoding: KeyEncoding?, expected: Int, actual: Int)
    /// A recognised structure that OpenSSL cannot decode.
    case malformedDER(encoding: KeyEncoding, reason: String)
    /// PEM armor present but no block could be decoded (bad base64, missing END line, …).
    case malformedPEM(reason: String)
    /// PEM blocks present, none of them a key.
    case noKeyInPEM(labels: [String])
    case encryptedPEM
    case unsupportedAlgorithm(String)
    case unsupportedCurve(String)
    /// A public key where a private key is needed (e.g. to write to a device).
    case notAPrivateKey
    /// Bytes after the DER structure in a key file (not a slot dump).
    case trailingBytes(keyLength: Int, fileLength: Int)
    /// The DCT slot is erased (first byte 0xFF): Device OS treats it as "no key" and generates one
    /// (device-os-keys.md §1.6).
    case blankSlot(slotSize: Int)
    /// The DCT slot holds something that is not a usable key; Device OS will not regenerate it
    /// because only the first byte is checked.
    case corruptSlot(slotSize: Int, reason: String)
    /// A PKCS#8 key written to a slot too small for it: the device holds a truncated key.
    case truncatedPKCS8InSlot(keyLength: Int, slotSize: Int)
    case generationFailed(algorithm: KeyAlgorithm, reason: String)
    /// The private key's parts do not belong together (damaged bytes inside a well-formed DER).
    case inconsistentKeyPair(algorithm: KeyAlgorithm)
    /// An RSA modulus larger than any key keyline handles; refused before any expensive check.
    case keyTooLarge(bits: Int, limit: Int)
    /// More bytes than any key file can legitimately hold; refused before parsing.
    case fileTooLarge(size: Int, limit: Int)
    /// A PEM file with more than one key: which one is meant cannot be guessed.
    case severalKeysInPEM(count: Int)
    /// A key followed by more bytes than the largest device key slot holds: not a slot dump.
    case tooLongForSlotDump(keyLength: Int, fileLength: Int, largestSlot: Int)

    public var description: String {
        switch self {
        case .empty:
            "the key data is empty"
        case .notAKey:
            "not a key: expected PEM (-----BEGIN …-----) or DER (PKCS#1, SEC1, PKCS#8 or SubjectPublicKeyInfo)"
        case let .truncated(encoding, expected, actual):
            "the \(encoding?.rawValue ?? "DER") key is truncated: its header says \(expected) bytes, only \(actual) are present; copy the complete file again"
        case let .malformedDER(encoding, reason):
            "the \(encoding.rawValue) key is malformed and cannot be decoded (\(reason))"
        case let .malformedPEM(reason):
            "the PEM file is malformed: \(reason); check that the BEGIN/END lines and the base64 body are intact"
        case let .noKeyInPEM(labels):
            "the PEM file holds no key (found: \(labels.joined(separator: ", ")))"
        case .encryptedPEM:
            "the PEM key is encrypted with a passphrase; decrypt it first (openssl pkey -in KEY -out PLAIN) — a device key cannot be protected by a passphrase"
        case let .unsupportedAlgorithm(name):
            "\(name) keys are not used by Particle devices; devices use RSA-1024 (TCP platforms) or EC P-256 (UDP platforms)"
        case let .unsupportedCurve(name):
            "EC curve \(name) is not supported; Particle devices use P-256 (prime256v1)"
        case .notAPrivateKey:
            "this is a public key; a private key is needed here"
        case let .trailingBytes(keyLength, fileLength):
            "the file has \(fileLength - keyLength) bytes after the \(keyLength)-byte key; if it is a raw DCT slot dump, read it as a slot"
        case let .blankSlot(slotSize):
            "the \(slotSize)-byte key slot is blank (erased, first byte 0xFF): the device has no key and will generate a new one on its next start"
        case let .corruptSlot(slotSize, reason):
            "the \(slotSize)-byte key slot is corrupt: \(reason). The device will not regenerate it (Device OS only checks the first byte); restore the escrowed key or write a new one"
        case let .truncatedPKCS8InSlot(keyLength, slotSize):
            "the slot holds a \(keyLength)-byte PKCS#8 key cut to \(slotSize) bytes: it was written in OpenSSL 3's default format, which does not fit. The device cannot use it; write a PKCS#1 key (keyline converts automatically)"
        case let .inconsistentKeyPair(algorithm):
            "the \(algorithm.displayName) private key is damaged: its private and public parts do not match; it cannot be used or escrowed"
        case let .keyTooLarge(bits, limit):
            "the RSA key has a \(bits)-bit modulus; keyline reads keys of at most \(limit) bits (devices use RSA-1024)"
        case let .fileTooLarge(size, limit):
            "the file is \(size) bytes; a key file is at most \(limit) bytes: this is not a key"
        case let .severalKeysInPEM(count):
            "the PEM file holds \(count) keys; give a file with exactly one key"
        case let .tooLongForSlotDump(keyLength, fileLength, largestSlot):
            "the file has \(fileLength - keyLength) bytes after the \(keyLength)-byte key, \(fileLength) in all: more than the largest device key slot (\(largestSlot) bytes), so it is not a slot dump"
        case let .generationFailed(algorithm, reason):
            "could not generate an \(algorithm.displayName) key: \(reason)"
        }
    }
}

extension DeviceKeyError: ClassifiedError {
    /// A slot read from a device that is blank where a key is needed, corrupt or truncated is
    /// the device's fault; a key file that is unreadable or unsuitable is the input's. (A key
    /// error wrapped in `ParticleDeviceError` is classified there, from the device's side.)
    public var failureClass: FailureClass {
        switch self {
        case .blankSlot, .corruptSlot, .truncatedPKCS8InSlot: .badDevice
        // OpenSSL could not make a key on this host: nothing about a device or a file.
        case .generationFailed: .needsOperator
        case .empty, .notAKey, .truncated, .malformedDER, .malformedPEM, .noKeyInPEM, .encryptedPEM,
             .unsupportedAlgorithm, .unsupportedCurve, .notAPrivateKey, .trailingBytes, .inconsistentKeyPair,
             .keyTooLarge, .fileTooLarge, .severalKeysInPEM, .tooLongForSlotDump: .badInput
        }
    }
}
