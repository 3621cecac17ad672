/// DFU 1.1 and ST DfuSe host side, over a `ControlTransport`.
/// See ../shared/docs/reference/dfu-protocol.md. Mirrors dfu-util's split: requests, DfuSe
/// commands, memory layouts, load loops, file suffix, one file each.
public enum DFU {}
