import CLibUSB

/// libusb-1.0 access to attached Particle devices (normal and DFU mode).
public enum USB {}
