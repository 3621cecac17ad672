import DeviceKeys
import Foundation
import ParticlePlatform

// The simulated cloud's own endpoints, under /sim/ (no token: tests, the demo and `keyline-sim
// serve` use them; keyline never does). All answer JSON.
//
//   GET  /sim/devices              every device the cloud knows: platform, key fingerprint and
//                                  algorithm, where the key came from (factory | api), product
//   GET  /sim/devices/{id}         one device, with its public key PEM and its call counts
//   GET  /sim/calls                call counters: provisioning, productDevices, api (their sum),
//                                  keysAccepted, connects (device key checks, not API calls),
//                                  and the same per device under "devices"
//   GET  /sim/faults               {"faults": SPEC}; POST /sim/faults with form spec=SPEC replaces
//                                  them (SimulatedCloudFaults: rate-limit, error, slow, down, none)
//   POST /sim/factory-keys         JSON [{"deviceID", "platform", "publicKey"?}]: devices as Particle
//                                  ships them; a key is taken only for a device the cloud holds no
//                                  key for. Answers {"registered": [...], "alreadyKnown": [...]}
//   POST /sim/connect              form deviceID, publicKey (PEM): a simulated device's cloud
//                                  handshake. 200 {"status":"online"}; 403 key_mismatch (the cloud
//                                  holds another key, or none); counted as a connect. Closed
//                                  unanswered while the cloud is down.
//   POST /sim/products/{p}/devices form id: puts a device in product p (e.g. another product, so
//                                  the API reports it as a non-member)
extension SimulatedCloud {
    func respondSim(to request: CloudHTTPRequest, segments: [String], now: Date) -> CloudHTTPResponse {
        switch (request.method, segments.count, segments.first) {
        case ("GET", 1, "devices"):
            let all = lock.withLock { devices }
            return .json(200, ["devices": all.mapValues { Self.describe($0, pem: false) }])
        case ("GET", 2, "devices"):
            let id = segments[1].lowercased()
            guard let record = record(for: id) else { return .error(404, "not_found", "the simulated cloud knows no device \(id)") }
            var body = Self.describe(record, pem: true)
            body["calls"] = Self.describe(callCounts(for: id))
            return .json(200, body)
        case ("GET", 1, "calls"):
            let (all, byDevice) = lock.withLock { (totals, perDevice) }
            var body = Self.describe(all)
            body["devices"] = byDevice.mapValues { Self.describe($0) }
            return .json(200, body)
        case ("GET", 1, "faults"):
            return .json(200, ["faults": currentFaults.spec(now: now)])
        case ("POST", 1, "faults"):
            let spec = CloudForm.parse(request.body)?["spec"] ?? String(decoding: request.body, as: UTF8.self)
            do {
                let parsed = try SimulatedCloudFaults.parse(spec, now: now)
                setFaults(parsed)
                return .json(200, ["faults": parsed.spec(now: now)])
            } catch {
                return .error(400, "invalid_faults", error.description)
            }
        case ("POST", 1, "factory-keys"):
            return registerFactoryKeys(request.body)
        case ("POST", 1, "connect"):
            if lock.withLock({ faults.isDown(at: now) }) { return .dropped }
            return deviceConnect(request.body)
        case ("POST", 3, "products") where segments[2] == "devices":
            guard let id = CloudForm.parse(request.body)?["id"]?.lowercased(), Self.isDeviceID(id) else {
                return .error(400, "invalid_device_id", "the form needs id=<24 hex digit device ID>")
            }
            lock.withLock { devices[id, default: DeviceRecord()].product = segments[1] }
            scheduleSave()
            return .json(200, ["ok": true])
        default:
            return .error(404, "not_found", "no such simulator endpoint: \(request.method) \(request.path)")
        }
    }

    struct FactoryDevice: Codable {
        var deviceID: String
        var platform: String
        var publicKey: String?
    }

    private func registerFactoryKeys(_ body: [UInt8]) -> CloudHTTPResponse {
        let list: [FactoryDevice]
        do { list = try JSONDecoder().decode([FactoryDevice].self, from: Data(body)) } catch {
            return .error(400, "invalid_request", "expected a JSON array of {deviceID, platform, publicKey?}: \(error)")
        }
        var keys: [String: DevicePublicKey] = [:]
        for device in list {
            guard Self.isDeviceID(device.deviceID) else { return .error(400, "invalid_device_id", "\(device.deviceID) is not a device ID") }
            guard (try? Platform.named(device.platform)) != nil else { return .error(400, "invalid_platform", "unknown platform \(device.platform)") }
            if let pem = device.publicKey {
                guard case .publicKey(let key)? = try? KeyFile.parse(Array(pem.utf8)).material else {
                    return .error(400, "invalid_public_key", "the public key of \(device.deviceID) cannot be read")
                }
                keys[device.deviceID] = key
            }
        }
        let (registered, known) = lock.withLock { () -> ([String], [String]) in
            var registered: [String] = [], known: [String] = []
            for device in list {
                var record = devices[device.deviceID] ?? DeviceRecord()
                record.platform = device.platform
                if record.publicKeySPKI != nil {
                    known.append(device.deviceID)
                } else if let key = keys[device.deviceID] {
                    record.publicKeySPKI = key.spkiDER
                    record.algorithm = key.algorithm == .rsa ? "rsa" : "ecc"
                    record.fingerprint = key.fingerprint
                    record.keySource = "factory"
                    registered.append(device.deviceID)
                }
                devices[device.deviceID] = record
            }
            return (registered, known)
        }
        scheduleSave()
        return .json(200, ["registered": registered, "alreadyKnown": known])
    }

    /// A device's handshake: does the key it presents equal the one the cloud holds?
    private func deviceConnect(_ body: [UInt8]) -> CloudHTTPResponse {
        guard let form = CloudForm.parse(body), let id = form["deviceID"], Self.isDeviceID(id),
              let pem = form["publicKey"], case .publicKey(let key)? = try? KeyFile.parse(Array(pem.utf8)).material
        else { return .error(400, "invalid_request", "the form needs deviceID and publicKey (PEM)") }
        let held = lock.withLock { () -> DeviceRecord? in
            totals.connects += 1
            perDevice[id, default: CallCounts()].connects += 1
            return devices[id]
        }
        guard let heldKey = held?.publicKeySPKI else {
            return .error(403, "key_mismatch", "the cloud holds no public key for \(id): it refuses the handshake")
        }
        guard heldKey == key.spkiDER else {
            return .error(403, "key_mismatch",
                          "the cloud holds key \(held?.fingerprint ?? "?") for \(id), the device presents \(key.fingerprint): it refuses the handshake")
        }
        return .json(200, ["status": "online"])
    }

    static func describe(_ record: DeviceRecord, pem: Bool) -> [String: Any] {
        var out: [String: Any] = [:]
        if let platform = record.platform { out["platform"] = platform }
        if let algorithm = record.algorithm { out["algorithm"] = algorithm }
        if let fingerprint = record.fingerprint { out["fingerprint"] = fingerprint }
        if let source = record.keySource { out["keySource"] = source }
        if let product = record.product { out["product"] = product }
        if pem, let spki = record.publicKeySPKI, let key = try? DevicePublicKey(spkiDER: spki) { out["publicKey"] = key.pem }
        return out
    }

    static func describe(_ counts: CallCounts) -> [String: Any] {
        ["provisioning": counts.provisioning, "productDevices": counts.productDevices, "api": counts.api,
         "keysAccepted": counts.keysAccepted, "connects": counts.connects]
    }
}
