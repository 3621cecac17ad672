/// The Particle device model: platform table, DCT layout, key slots, server-key blob.
public enum ParticleDevice {}
