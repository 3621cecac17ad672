/// Particle device keys through OpenSSL's libcrypto: RSA-1024 as PKCS#1 DER for TCP platforms,
/// EC P-256 as SEC1 DER for UDP platforms (../shared/docs/reference/particle-cli-keys.md §4).
public enum DeviceKeys {}
