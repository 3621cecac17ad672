/// Virtual Particle devices behind `ControlTransport`: descriptors, DfuSe state machine, flash
/// with timing, DCT, key generation on boot, fault injection.
public enum Simulator {}
