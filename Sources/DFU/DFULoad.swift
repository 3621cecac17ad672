/// Upload (read), download (write with erase), verify and leave loops over DfuSe — the layer
/// dfu-util keeps in `dfu_load.c` / `dfuse_dnload_element` (reference dfu-protocol.md §2.4, §3.3, §3.4).

extension DfuSeDevice {
    /// Runs one step; on failure tries to bring the device back to dfuIDLE (CLRSTATUS from
    /// dfuERROR, ABORT from a transfer state — what DFU 1.1 allows) and throws with context.
    func step<T>(_ operation: DFUOperation, alt: UInt8, address: UInt32?,
                 _ body: () async throws(DFUError.Reason) -> T) async throws(DFUError) -> T {
        do {
            return try await body()
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
            let recovered = recoverable ? await interface.recoverToIdle() : false
            throw DFUError(operation: operation, alt: alt, address: address, reason: reason, recovered: recovered)
        }
    }

    /// SET_INTERFACE to `alt`, then bring the device to dfuIDLE.
    func prepare(alt: UInt8) async throws(DFUError) {
        do {
            try await interface.transport.selectAlternateSetting(interface: interface.number, alternateSetting: alt)
        } catch {
            throw DFUError(operation: .selectAlternateSetting, alt: alt, reason: .transfer(error, request: nil))
        }
        _ = try await step(.prepare, alt: alt, address: nil) { () async throws(DFUError.Reason) in try await interface.ensureIdle() }
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
        try await prepare(alt: alt)
        return try await upload(alt: alt, address: address, length: length, phase: .reading, progress: progress)
    }

    func upload(alt: UInt8, address: UInt32, length: Int, phase: DFUProgress.Phase,
                progress: DFUProgressHandler?) async throws(DFUError) -> [UInt8] {
        try await step(.setAddress, alt: alt, address: address) { () async throws(DFUError.Reason) in
            try await interface.dfuseCommand(.setAddressPointer(address))
            try await interface.abortToIdle()
        }
        var data: [UInt8] = []
        data.reserveCapacity(length)
        var block = DfuSeBlock.firstData
        while data.count < length {
            let chunk = min(transferSize, length - data.count)
            let chunkAddress = address &+ UInt32(data.count)
            if block == UInt16.max {
                // Block numbers ran out (256 MiB at 4 KiB): restart the count from a new address pointer.
                try await step(.setAddress, alt: alt, address: chunkAddress) { () async throws(DFUError.Reason) in
                    try await interface.abortToIdle()  // DNLOAD is not allowed in dfuUPLOAD-IDLE
                    try await interface.dfuseCommand(.setAddressPointer(chunkAddress))
                    try await interface.abortToIdle()
                }
                block = DfuSeBlock.firstData
            }
            let currentBlock = block
            let reply = try await step(.upload, alt: alt, address: chunkAddress) { () async throws(DFUError.Reason) in
                let reply = try await interface.upload(block: currentBlock, length: chunk)
                if reply.count < chunk {
                    // A short reply ends an upload; check the status for the reason before calling it short.
                    if let status = try? await interface.getStatus() { try status.requireNoError() }
                    throw .shortRead(expected: chunk, received: reply.count)
                }
                return reply
            }
            data += reply.prefix(chunk)
            block &+= 1
            progress?(DFUProgress(phase: phase, bytesDone: data.count, totalBytes: length))
        }
        try await step(.abort, alt: alt, address: nil) { () async throws(DFUError.Reason) in try await interface.abortToIdle() }
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
        try await prepare(alt: alt)

        let sectors = layout.erasableSectors(covering: address, length: bytes.count)
        let total = bytes.count
        for (index, sector) in sectors.enumerated() {
            try await step(.erase, alt: alt, address: sector) { () async throws(DFUError.Reason) in
                try await interface.dfuseCommand(.erasePage(sector))
            }
            progress?(DFUProgress(phase: .erasing, bytesDone: (index + 1) * total / sectors.count, totalBytes: total))
        }

        try await step(.setAddress, alt: alt, address: address) { () async throws(DFUError.Reason) in
            try await interface.dfuseCommand(.setAddressPointer(address))
        }
        var done = 0
        var block = DfuSeBlock.firstData
        while done < total {
            let chunk = min(transferSize, total - done)
            let chunkAddress = address &+ UInt32(done)
            if block == UInt16.max {
                // Block numbers ran out: restart the block count from a new address pointer.
                try await step(.setAddress, alt: alt, address: chunkAddress) { () async throws(DFUError.Reason) in
                    try await interface.dfuseCommand(.setAddressPointer(chunkAddress))
                }
                block = DfuSeBlock.firstData
            }
            let slice = Array(bytes[done..<done + chunk])
            let currentBlock = block
            try await step(.download, alt: alt, address: chunkAddress) { () async throws(DFUError.Reason) in
                try await interface.download(block: currentBlock, slice)
                try await interface.completeDataBlock()
            }
            done += chunk
            block &+= 1
            progress?(DFUProgress(phase: .writing, bytesDone: done, totalBytes: total))
        }
        try await step(.abort, alt: alt, address: nil) { () async throws(DFUError.Reason) in try await interface.abortToIdle() }

        guard verify else { return }
        guard layout.segments(covering: address, length: bytes.count)?.allSatisfy({ $0.attributes.contains(.readable) }) == true else {
            return  // write-only region: nothing to read back
        }
        let readBack = try await upload(alt: alt, address: address, length: total, phase: .verifying, progress: progress)
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
        try await prepare(alt: alt)
        for sector in layout.erasableSectors(covering: address, length: length) {
            try await step(.erase, alt: alt, address: sector) { () async throws(DFUError.Reason) in
                try await interface.dfuseCommand(.erasePage(sector))
            }
        }
        try await step(.abort, alt: alt, address: nil) { () async throws(DFUError.Reason) in try await interface.abortToIdle() }
    }

    /// The DfuSe command codes the device supports (UPLOAD block 0).
    public func supportedCommands(alt: UInt8 = 0) async throws(DFUError) -> [UInt8] {
        try await prepare(alt: alt)
        return try await step(.getCommands, alt: alt, address: nil) { () async throws(DFUError.Reason) in
            try await interface.dfuseSupportedCommands()
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
        try await prepare(alt: alt)
        if let address {
            try await step(.setAddress, alt: alt, address: address) { () async throws(DFUError.Reason) in
                try await interface.dfuseCommand(.setAddressPointer(address))
            }
        }
        do {
            try await interface.leave()
        } catch {
            throw DFUError(operation: .leave, alt: alt, address: address, reason: error)
        }
    }
}
