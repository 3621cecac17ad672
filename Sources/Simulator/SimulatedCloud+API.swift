import DeviceKeys
import Foundation
import ParticlePlatform

// The two endpoints particle-cli calls (particle-cli-keys.md §3), validated as the real cloud
// would have to: a key registered on the wrong protocol makes the device's handshake fail
// (particle-cli issue #582), so the simulated cloud refuses it with a 400.
extension SimulatedCloud {
    /// `POST /v1/provisioning/{deviceId}`.
    func provision(pathDeviceID: String, request: CloudHTTPRequest) -> CloudHTTPResponse {
        guard let form = CloudForm.parse(request.body) else {
            return .error(400, "invalid_request", "the body is not application/x-www-form-urlencoded (a malformed % escape)")
        }
        guard let deviceID = form["deviceID"], Self.isDeviceID(deviceID) else {
            return .error(400, "invalid_device_id", "deviceID \"\(form["deviceID"] ?? "")\" is not a device ID (24 lowercase hex digits)")
        }
        guard pathDeviceID == deviceID else {
            return .error(400, "invalid_device_id", "the path names device \(pathDeviceID) but the form's deviceID is \(deviceID)")
        }
        guard let algorithm = form["algorithm"], algorithm == "rsa" || algorithm == "ecc" else {
            return .error(400, "invalid_algorithm", "algorithm must be rsa or ecc, not \"\(form["algorithm"] ?? "")\"")
        }
        guard let pem = form["publicKey"], pem.contains("-----BEGIN PUBLIC KEY-----") else {
            return .error(400, "invalid_public_key", "publicKey must be a PEM SubjectPublicKeyInfo (-----BEGIN PUBLIC KEY-----)")
        }
        let key: DevicePublicKey
        do {
            let file = try KeyFile.parse(Array(pem.utf8))
            guard case .publicKey(let parsed) = file.material, file.encoding == .spki else {
                return .error(400, "invalid_public_key", "publicKey must be a public key (SPKI), not a private key")
            }
            key = parsed
        } catch {
            return .error(400, "invalid_public_key", "publicKey cannot be read: \(error)")
        }
        let keyAlgorithm = algorithm == "rsa" ? KeyAlgorithm.rsa : .ec
        guard key.algorithm == keyAlgorithm else {
            return .error(400, "invalid_algorithm", "algorithm \(algorithm) does not match the key, which is \(key.algorithm.displayName)")
        }
        let productID = form["product_id"].flatMap { $0.isEmpty ? nil : $0 }
        if let productID, !productExists(productID) {
            return .error(404, "not_found", "product \(productID) not found (or the token has no access to it)")
        }
        return lock.withLock { () -> CloudHTTPResponse in
            var record = devices[deviceID] ?? DeviceRecord()
            if let expected = Self.expectedAlgorithm(deviceID: deviceID, platform: record.platform), expected != keyAlgorithm {
                let platform = record.platform ?? "this device"
                return .error(400, "invalid_algorithm",
                              "\(platform) uses the \(expected == .rsa ? "TCP protocol (rsa)" : "UDP protocol (ecc)"): its key cannot be \(algorithm); the device could never complete a handshake with it")
            }
            if let productID, let owner = record.product, owner != productID {
                return .error(403, "forbidden", "device \(deviceID) belongs to another product")
            }
            record.publicKeySPKI = key.spkiDER
            record.algorithm = algorithm
            record.fingerprint = key.fingerprint
            record.keySource = "api"
            devices[deviceID] = record
            totals.keysAccepted += 1
            perDevice[deviceID, default: CallCounts()].keysAccepted += 1
            return .json(200, ["ok": true, "device_id": deviceID, "algorithm": algorithm] as [String: Any])
        }.saving(self)
    }

    /// `POST /v1/products/{productIdOrSlug}/devices` with `id=`.
    func addToProduct(_ product: String, request: CloudHTTPRequest) -> CloudHTTPResponse {
        guard productExists(product) else {
            return .error(404, "not_found", "product \(product) not found (or the token has no access to it)")
        }
        guard let form = CloudForm.parse(request.body), let id = form["id"], !id.isEmpty else {
            return .error(400, "invalid_request", "the form needs id=<device ID>")
        }
        let deviceID = id.lowercased()
        return lock.withLock { () -> CloudHTTPResponse in
            var updated: [String] = [], existing: [String] = [], invalid: [String] = [], nonmember: [String] = []
            if !Self.isDeviceID(deviceID) {
                invalid.append(id)
            } else if let owner = devices[deviceID]?.product {
                if owner == product { existing.append(deviceID) } else { nonmember.append(deviceID) }
            } else {
                devices[deviceID, default: DeviceRecord()].product = product
                updated.append(deviceID)
            }
            return .json(200, ["updatedDeviceIds": updated, "existingDeviceIds": existing,
                               "invalidDeviceIds": invalid, "nonmemberDeviceIds": nonmember])
        }.saving(self)
    }

    func productExists(_ product: String) -> Bool {
        products.isEmpty ? (UInt32(product) != nil) : products.contains(product)
    }

    static func isDeviceID(_ text: String) -> Bool {
        text.utf8.count == 24 && text.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    /// The key algorithm the device's protocol needs: from its factory platform, else from its ID
    /// (nRF52840 and RTL872x IDs have fixed prefixes and both run UDP; STM32 IDs say nothing).
    static func expectedAlgorithm(deviceID: String, platform: String?) -> KeyAlgorithm? {
        if let platform, let known = try? Platform.named(platform) { return known.keyAlgorithm }
        let byPrefix = Set(Platform.all.filter { $0.deviceIDPrefix.map { deviceID.hasPrefix($0) } ?? false }.map(\.keyAlgorithm))
        return byPrefix.count == 1 ? byPrefix.first : nil
    }
}

extension CloudHTTPResponse {
    /// Saves the cloud's state after a successful change.
    func saving(_ cloud: SimulatedCloud) -> CloudHTTPResponse {
        if status == 200 { cloud.scheduleSave() }
        return self
    }
}
