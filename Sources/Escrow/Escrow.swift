/// age v1 escrow backups (X25519 recipients), the backup payload and escrow stores.
/// Split as in FiloSottile/age: format, stream, armor, bech32, x25519 — one file each.
public enum Escrow {}
