import Foundation
import Escrow
import DeviceKeys

extension S3EscrowStore: WriteOnceProbing {
    /// PutObject of `<prefix>/.keyline-station-checks/NAME` with `If-None-Match: *`, twice: the
    /// first must be accepted (2xx: the store is reachable and takes writes with these
    /// credentials), the second refused with 412 (the store honours conditional writes, so it
    /// keeps escrow objects write-once). Other answers throw the store's error.
    public func probeWriteOnce(name: String) async throws -> StoreWriteProbe.Outcome {
        let base = settings.prefix.isEmpty ? StoreWriteProbe.folder : "\(settings.prefix)/\(StoreWriteProbe.folder)"
        let objectName = "\(base)/\(name)"
        let bytes = StoreWriteProbe.contents(name: name)
        let headers: [(name: String, value: String)] = [
            ("If-None-Match", "*"), ("Content-Type", "text/plain"), ("x-amz-sdk-checksum-algorithm", "SHA256"),
            ("x-amz-checksum-sha256", Data(SHA256Digest.hash(bytes)).base64EncodedString()),
        ]
        for attempt in 1...2 {
            let response = try await client.send(.PUT, operation: "PutObject", name: objectName, headers: headers, body: bytes)
            switch response.status {
            case 200...299 where attempt == 1:
                continue
            case 200...299:
                return .secondWriteAccepted
            case 412 where attempt == 2:
                return .secondWriteRefused
            default:
                throw client.error(from: response, operation: "PutObject", name: objectName)
                    ?? S3StoreError.badResponse(operation: "PutObject", bucket: settings.bucket, key: objectName,
                                                reason: "HTTP \(response.status)")
            }
        }
        return .secondWriteRefused  // not reached: the second attempt returns or throws
    }
}
