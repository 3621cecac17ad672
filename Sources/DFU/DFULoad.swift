import DeviceBus

/// Upload (read), download (write with erase), verify and leave loops over DfuSe — the layer
/// dfu-util keeps in `dfu_load.c` / `dfuse_dnload_element` (reference dfu-protocol.md §2.4, §3.3, §3.4).
///
/// Each public operation enters the device's thread once (`DFUInterface.run`) and runs its whole
/// sequence of requests there synchronously through a `DFUSession`; progress handlers are called
/// from that thread. A cancelled task stops at the next block (or wait) with `.cancelled`; the
/// transfer in progress finishes or times out first.

extension DfuSeDevice {
    /// This device's DFU interface over the device thread's control.
    public func session(_ control: any BlockingControl) -> DFUSession { interface.session(control) }

    /// Runs one step; on failure tries to bring the device back to dfuIDLE (CLRSTATUS from
    /// dfuERROR, ABORT from a transfer state — what DFU 1.1 allows) and throws with context.
    func step<T>(_ dfu: DFUSession, _ operation: DFUOperation, alt: UInt8, address: UInt32?,
                 _ body: () throws(DFUError.Reason) -> T) throws(DFUError) -> T {
        do {
            return try body()
        } catch {
            var reason = error
            // Particle bootloaders refuse UPLOAD/DNLOAD on a protected device with errVENDOR.
            if case .deviceStatus(.errVendor, _) = error, isProtected(alt: alt) { reason = .deviceProtected }
            let recoverable: Bool
            switch error {
            // Cancelled: the caller wants to stop now, not after more transfers.
            case .transfer(.disconnected, _), .transfer(.timeout, _), .transfer(.cancelled, _), .notInDFUMode: recoverable = false
            default: recoverable = true
            }
            let recovered = recoverable ? dfu.recoverToIdle() : false
            throw DFUError(operation: operation, alt: alt, address: address, reason: reason, recovered: recovered)
        }
    }

    /// SET_INTERFACE to `alt`, then bring the device to dfuIDLE.
    func prepare(_ dfu: DFUSession, alt: UInt8) throws(DFUError) {
        do {
            try dfu.control.selectAlternateSetting(interface: dfu.number, alternateSetting: alt)
        } catch {
            throw DFUError(operation: .selectAlternateSetting, alt: alt, reason: .transfer(error, request: nil))
        }
        _ = try step(dfu, .prepare, alt: alt, address: nil) { () throws(DFUError.Reason) in try dfu.ensureIdle() }
    }

    func checkRange(_ layout: DfuSeMemoryLayout, alt: UInt8, operation: DFUOperation, address: UInt32, length: Int,
                    needs attribute: DfuSeMemoryLayout.Attributes) throws(DFUError) {
        guard UInt64(address) + UInt64(length) <= 1 << 32, let segments = layout.segments(covering: address, length: length) else {
            throw DFUError(operation: operation, alt: alt, address: address, reason: .outsideMemoryLayout(length: length))
        }
        if layout.isProtected { throw DFUError(operation: operation, alt: alt, address: address, reason: .deviceProtected) }
        if let bad = segments.first(where: { !$0.attributes.contains(attribute) }) {
            throw DFUError(operation: operation, alt: alt, address: max(address, bad.start),
                           reason: attribute == .readable ? .notReadable : .notWritable)
        }
    }

    /// Reads `length` bytes at `address` of `alt`: Set Address Pointer, then UPLOAD blocks 2, 3, …
    /// of wTransferSize, then ABORT to idle.
    public func read(alt: UInt8, address: UInt32, length: Int, progress: DFUProgressHandler? = nil) async throws(DFUError) -> [UInt8] {
        let layout = try layout(alt: alt)
        try checkRange(layout, alt: alt, operation: .upload, address: address, length: length, needs: .readable)
        guard length > 0 else { return [] }
        let device = self
        return try await interface.run { (dfu) throws(DFUError) -> [UInt8] in
            try device.prepare(dfu, alt: alt)
            return try device.upload(dfu, alt: alt, address: address, length: length, phase: .reading, progress: progress)
        }
    }

    func upload(_ dfu: DFUSession, alt: UInt8, address: UInt32, length: Int, phase: DFUProgress.Phase,
                progress: DFUProgressHandler?) throws(DFUError) -> [UInt8] {
        try step(dfu, .setAddress, alt: alt, address: address) { () throws(DFUError.Reason) in
            try dfu.dfuseCommand(.setAddressPointer(address))
            try dfu.abortToIdle()
        }
        var data: [UInt8] = []
        data.reserveCapacity(length)
        var block = DfuSeBlock.firstData
        while data.count < length {
            let chunk = min(transferSize, length - data.count)
            let chunkAddress = address &+ UInt32(data.count)
            if block == UInt16.max {
                // Block numbers ran out (256 MiB at 4 KiB): restart the count from a new address pointer.
                try step(dfu, .setAddress, alt: alt, address: chunkAddress) { () throws(DFUError.Reason) in
                    try dfu.abortToIdle()  // DNLOAD is not allowed in dfuUPLOAD-IDLE
                    try dfu.dfuseCommand(.setAddressPointer(chunkAddress))
                    try dfu.abortToIdle()
                }
                block = DfuSeBlock.firstData
            }
            let currentBlock = block
            let reply = try step(dfu, .upload, alt: alt, address: chunkAddress) { () throws(DFUError.Reason) in
                try dfu.checkCancellation(.upload)
                let reply = try dfu.upload(block: currentBlock, length: chunk)
                if reply.count < chunk {
                    // A short reply ends an upload; check the status for the reason before calling it short.
                    if let status = try? dfu.getStatus() { try status.requireNoError() }
                    throw .shortRead(expected: chunk, received: reply.count)
                }
                return reply
            }
            if reply.count == chunk { data += reply } else { data += reply.prefix(chunk) }
            block &+= 1
            progress?(DFUProgress(phase: phase, bytesDone: data.count, totalBytes: length))
        }
        try step(dfu, .abort, alt: alt, address: nil) { () throws(DFUError.Reason) in try dfu.abortToIdle() }
        return data
    }

    /// Writes `bytes` at `address` of `alt`. Erases only the sectors the data covers, and only in
    /// segments the layout marks erasable (the DCT on Gen3 is `e`: never erased); refuses ranges
    /// that are outside the layout or not writeable before touching the device. With `verify`,
    /// reads everything back and compares.
    public func write(alt: UInt8, address: UInt32, bytes: [UInt8], verify: Bool = true,
                      progress: DFUProgressHandler? = nil) async throws(DFUError) {
        let layout = try layout(alt: alt)
        try checkRange(layout, alt: alt, operation: .download, address: address, length: bytes.count, needs: .writable)
        guard !bytes.isEmpty else { return }
        let device = self
        try await interface.run { (dfu) throws(DFUError) in
            try device.write(dfu, layout: layout, alt: alt, address: address, bytes: bytes, verify: verify, progress: progress)
        }
    }

    func write(_ dfu: DFUSession, layout: DfuSeMemoryLayout, alt: UInt8, address: UInt32, bytes: [UInt8], verify: Bool,
               progress: DFUProgressHandler?) throws(DFUError) {
        try prepare(dfu, alt: alt)

        let sectors = layout.erasableSectors(covering: address, length: bytes.count)
        let total = bytes.count
        for (index, sector) in sectors.enumerated() {
            try step(dfu, .erase, alt: alt, address: sector) { () throws(DFUError.Reason) in
                try dfu.checkCancellation(.dnload)
                try dfu.dfuseCommand(.erasePage(sector))
            }
            progress?(DFUProgress(phase: .erasing, bytesDone: (index + 1) * total / sectors.count, totalBytes: total))
        }

        try step(dfu, .setAddress, alt: alt, address: address) { () throws(DFUError.Reason) in
            try dfu.dfuseCommand(.setAddressPointer(address))
        }
        var done = 0
        var block = DfuSeBlock.firstData
        while done < total {
            let chunk = min(transferSize, total - done)
            let chunkAddress = address &+ UInt32(done)
            if block == UInt16.max {
                // Block numbers ran out: restart the block count from a new address pointer.
                try step(dfu, .setAddress, alt: alt, address: chunkAddress) { () throws(DFUError.Reason) in
                    try dfu.dfuseCommand(.setAddressPointer(chunkAddress))
                }
                block = DfuSeBlock.firstData
            }
            let slice = Array(bytes[done..<done + chunk])
            let currentBlock = block
            try step(dfu, .download, alt: alt, address: chunkAddress) { () throws(DFUError.Reason) in
                try dfu.checkCancellation(.dnload)
                try dfu.download(block: currentBlock, slice)
                try dfu.completeDataBlock()
            }
            done += chunk
            block &+= 1
            progress?(DFUProgress(phase: .writing, bytesDone: done, totalBytes: total))
        }
        try step(dfu, .abort, alt: alt, address: nil) { () throws(DFUError.Reason) in try dfu.abortToIdle() }

        guard verify else { return }
        guard layout.segments(covering: address, length: bytes.count)?.allSatisfy({ $0.attributes.contains(.readable) }) == true else {
            return  // write-only region: nothing to read back
        }
        let readBack = try upload(dfu, alt: alt, address: address, length: total, phase: .verifying, progress: progress)
        if let index = zip(readBack, bytes).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset
            ?? (readBack.count == total ? nil : readBack.count) {
            throw DFUError(operation: .verify, alt: alt, address: address &+ UInt32(index),
                           reason: .verifyMismatch(firstDifferenceAt: address &+ UInt32(index)))
        }
    }

    /// Erases the sectors covering the range (erasable segments only).
    public func erase(alt: UInt8, address: UInt32, length: Int) async throws(DFUError) {
        let layout = try layout(alt: alt)
        try checkRange(layout, alt: alt, operation: .erase, address: address, length: length, needs: [])
        let device = self
        try await interface.run { (dfu) throws(DFUError) in
            try device.prepare(dfu, alt: alt)
            for sector in layout.erasableSectors(covering: address, length: length) {
                try device.step(dfu, .erase, alt: alt, address: sector) { () throws(DFUError.Reason) in
                    try dfu.checkCancellation(.dnload)
                    try dfu.dfuseCommand(.erasePage(sector))
                }
            }
            try device.step(dfu, .abort, alt: alt, address: nil) { () throws(DFUError.Reason) in try dfu.abortToIdle() }
        }
    }

    /// The DfuSe command codes the device supports (UPLOAD block 0).
    public func supportedCommands(alt: UInt8 = 0) async throws(DFUError) -> [UInt8] {
        let device = self
        return try await interface.run { (dfu) throws(DFUError) -> [UInt8] in
            try device.prepare(dfu, alt: alt)
            return try device.step(dfu, .getCommands, alt: alt, address: nil) { () throws(DFUError.Reason) in
                try dfu.dfuseSupportedCommands()
            }
        }
    }

    /// Current status without changing anything.
    public func status() async throws(DFUError) -> DFUStatus {
        do { return try await interface.getStatus() } catch { throw DFUError(operation: .prepare, reason: error) }
    }

    /// Leaves DFU mode and starts the application. With `address`, sets the jump address first
    /// (dfu-util does when `-s ADDR:leave` was given). A device that resets before answering the
    /// final GETSTATUS has left; that is success.
    public func leave(alt: UInt8 = 0, address: UInt32? = nil) async throws(DFUError) {
        let device = self
        try await interface.run { (dfu) throws(DFUError) in
            try device.prepare(dfu, alt: alt)
            if let address {
                try device.step(dfu, .setAddress, alt: alt, address: address) { () throws(DFUError.Reason) in
                    try dfu.dfuseCommand(.setAddressPointer(address))
                }
            }
            do throws(DFUError.Reason) {
                try dfu.leave()
            } catch {
                throw DFUError(operation: .leave, alt: alt, address: address, reason: error)
            }
        }
    }
}
