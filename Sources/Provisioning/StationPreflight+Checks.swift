import DeviceBus
import Escrow
import EscrowS3
import Foundation
import LocalFiles
import ParticlePlatform
import Registry

extension StationPreflight {
    /// What a station needs to open Particle devices on Linux: the udev rule particle-cli ships as
    /// `50-particle.rules` (Particle's USB vendor ID 0x2b04, reference/particle-cli-keys.md).
    static let udevHint = #"install a udev rule granting this user Particle's devices, as particle-cli ships it: SUBSYSTEMS=="usb", ATTRS{idVendor}=="2b04", GROUP="plugdev", MODE="0664" in /etc/udev/rules.d/50-particle.rules; then `sudo udevadm control --reload`, add the user to plugdev, and replug the hub"#

    // MARK: USB

    /// libusb initialises and lists the bus, and every Particle device on a permitted port opens
    /// (and is closed at once: nothing is sent to it). No device attached is not a failure — the
    /// shift plugs them in — but a device that cannot be opened is.
    func usb(ports: PortAllowList?) async -> StationCheck {
        if let reason = busUnavailableReason {
            return .fail(.usb, "libusb cannot be used: \(reason)", hint: "install libusb-1.0 and run on the station's USB host")
        }
        let devices: [BusDevice]
        do {
            devices = try await bus.enumerate()
        } catch {
            return .fail(.usb, "listing the USB bus failed: \(error)", hint: Self.udevHint)
        }
        let particle = devices.filter { Platform.matching(vendorID: $0.identity.vendorID, productID: $0.identity.productID) != nil }
        let permitted = particle.filter { ports?.permits(portPath: $0.port.description) ?? true }
        var problems: [String] = []
        var permissionDenied = false
        for device in permitted {
            let port = ports?.label(forPortPath: device.port.description) ?? device.port.description
            guard device.identity.serialNumber != nil else {
                // Enumeration opens a device to read its serial; no serial is almost always no permission.
                problems.append("port \(port): the serial number could not be read")
                permissionDenied = true
                continue
            }
            do {
                let transport = try await bus.open(device)
                await transport.close()
            } catch {
                let text = "\(error)"
                if text.localizedCaseInsensitiveContains("denied") || text.localizedCaseInsensitiveContains("permission") {
                    permissionDenied = true
                }
                problems.append("port \(port): cannot open: \(text)")
            }
        }
        let outside = particle.count - permitted.count
        let seen = "libusb sees \(particle.count) Particle device(s)" + (outside > 0 ? " (\(outside) on ports outside the pipeline's list, not opened)" : "")
        if !problems.isEmpty {
            return .fail(.usb, seen + "; " + problems.joined(separator: "; "),
                         hint: permissionDenied ? Self.udevHint : "close other programs using the devices (dfu-util, particle-cli, another keyline) and replug")
        }
        if particle.isEmpty {
            return .pass(.usb, "libusb initialised; no Particle device attached yet (plug one in and check again to test permissions)")
        }
        return .pass(.usb, seen + "; opened \(permitted.count)")
    }

    // MARK: Registry

    /// Reachable, the schema this keyline needs (no pending migration), the login bound to this
    /// station with the station role (schema 0008), and a write as that station: a
    /// `station.checked` event, which the audit trail keeps as the record of the check.
    func registryCheck(_ registry: RegistryDatabase, station: String) async -> StationCheck {
        let version: Int?
        do {
            version = try await registry.schemaVersion()
        } catch {
            return .fail(.registry, "cannot read the schema version: \(error)")
        }
        let required = RegistryDatabase.requiredSchemaVersion
        guard let version, version >= required else {
            return .fail(.registry, "the schema is at \(version.map(String.init) ?? "nothing (never migrated)"), this keyline needs \(required)",
                         hint: "an administrator runs `keyline db migrate`")
        }
        let identity: SessionIdentity
        do {
            identity = try await registry.sessionIdentity()
        } catch {
            return .fail(.registry, "cannot read the login's binding: \(error)")
        }
        var bound = "login \(identity.login) is trusted (superuser or schema owner)"
        if !identity.trusted {
            let grant = "an administrator runs `keyline db grant \(identity.login) --role station --station \(station)`"
            guard let binding = identity.binding else {
                return .fail(.registry, "login \(identity.login) is not bound to a station: its writes would be refused", hint: grant)
            }
            guard binding.role == .station else {
                return .fail(.registry, "login \(identity.login) has the \(binding.role.rawValue) role, not station", hint: grant)
            }
            guard binding.station == station else {
                return .fail(.registry, "login \(identity.login) is bound to station \(binding.station ?? "none"), not \(station)",
                             hint: "run with --station \(binding.station ?? station), or " + grant)
            }
            bound = "login \(identity.login) bound to station \(station)"
        }
        do {
            try await registry.appendEvent(kind: "station.checked", station: station, detail: ["login": identity.login])
        } catch {
            return .fail(.registry, "\(bound), but a write as station \(station) was refused: \(error)",
                         hint: "an administrator checks the login's role (`keyline db logins`)")
        }
        return .pass(.registry, "reachable, schema \(version) current, \(bound), wrote a station.checked event")
    }

    // MARK: Store

    /// Reachable and writable once: a new probe object (`StoreWriteProbe`) written with the store's
    /// write-once primitive, and a second write of it refused.
    func storeCheck(_ definition: PipelineDefinition) async -> StationCheck {
        let (location, environment) = (definition.escrow.store, request.environment)
        let store: any EscrowStore
        do {
            store = try await offPool { try EscrowStores.open(location, environment: environment) }
            if store is DirectoryEscrowStore { try await offPool { try EscrowDirectoryCheck.check(location) } }
        } catch {
            return .fail(.store, "\(error)", hint: "check the pipeline's escrow.store (or --store / KEYLINE_ESCROW_STORE)")
        }
        guard let probing = store as? any WriteOnceProbing else {
            return .fail(.store, "\(store.displayName): this kind of store cannot be checked")
        }
        let name = StoreWriteProbe.name(station: definition.station)
        let probe = "\(store.displayName)/\(StoreWriteProbe.folder)/\(name)"
        do {
            switch try await probing.probeWriteOnce(name: name) {
            case .secondWriteRefused:
                return .pass(.store, "wrote \(probe); a second write of it was refused (write-once honoured)")
            case .secondWriteAccepted:
                return .fail(.store, "\(probe) was overwritten by a second write: the store does not refuse writes to an existing name (If-None-Match / create-exclusive ignored), so it cannot keep escrow objects write-once",
                             hint: "use a store that honours conditional writes (AWS S3, MinIO, Ceph RGW 18+; a local or NFSv3+ disk), or remove the proxy that strips the header")
            }
        } catch {
            return .fail(.store, "cannot write \(probe): \(error)",
                         hint: "check the store's permissions, credentials and free space; it must be writable by this station")
        }
    }
}
