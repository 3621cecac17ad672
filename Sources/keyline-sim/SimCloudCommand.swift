import ArgumentParser
import CommandReporting
import Foundation
import Simulator

/// `keyline-sim cloud`: a simulated Particle cloud on a loopback port.
struct SimCloudCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cloud",
        abstract: "Serve a simulated Particle cloud (the key upload and product membership endpoints) on loopback.",
        discussion: """
            Answers the two calls particle-cli makes, as it makes them: POST /v1/provisioning/{deviceId} \
            (form deviceID, publicKey as SPKI PEM, filename, order, algorithm rsa|ecc, product_id) and \
            POST /v1/products/{product}/devices (form id=). Both need Authorization: Bearer with the \
            token in --token-file (else 401 invalid_token). Bad input is a 400 with Particle's error \
            shape: a malformed device ID or PEM, or an algorithm the device's protocol cannot use \
            (ecc for a TCP/RSA Photon, rsa for a UDP/EC Boron: the handshake would fail). A product \
            not in --product is a 404. Every reply carries X-Request-Id.

            Simulated devices (keyline-sim serve --cloud URL) present their key at each cloud \
            connection and come online only if the cloud holds it. Tests and scripts look inside \
            through /sim/ (no token): /sim/devices[/ID] (keys held), /sim/calls (API calls per \
            endpoint and per device, and device connects counted apart), /sim/faults (GET; POST \
            spec=SPEC), /sim/factory-keys, /sim/products/P/devices. keyline never calls /sim/.

            --faults SPEC, comma-separated: rate-limit=N[:SECONDS] (the next N API calls answer \
            429 with Retry-After), error=N[:STATUS] (the next N answer 5xx, default 503), \
            slow=SECONDS (every API answer that late), down=SECONDS (every connection closed \
            unanswered for that long, devices' included), none.

            Prints "cloud URL" on stdout once listening (and writes the URL to --url-file), then \
            serves until SIGINT or SIGTERM. --state FILE keeps the keys held across restarts.

            Exit codes: 0 stopped by a signal, 64 bad option or empty token file, 65 unreadable \
            --state, 66 no token file, 74 cannot listen or write --url-file.
            """)

    @Option(help: "Loopback address and port to listen on (port 0: a free one).")
    var listen: String = "127.0.0.1:0"

    @Option(name: .customLong("token-file"), help: "File holding the access token API calls must present.")
    var tokenFile: String

    @Option(name: .customLong("product"), help: "A product ID the token may use (repeat; none given: any numeric ID).")
    var products: [String] = []

    @Option(help: "Faults to inject (see above).")
    var faults: String?

    @Option(help: "File keeping the keys the cloud holds across restarts (JSON, mode 0600).")
    var state: String?

    @Option(name: .customLong("url-file"), help: "Also write the URL to this file once listening.")
    var urlFile: String?

    func run() async throws {
        try await CLI.run(json: false) {
            let (host, port) = try Self.address(listen)
            let token = try Self.readToken(tokenFile)
            let parsedFaults = try SimulatedCloudFaults.parse(faults ?? "")
            let cloud = try SimulatedCloud(token: token, products: products, faults: parsedFaults,
                                           stateFile: state.map { URL(fileURLWithPath: $0) })
            let server = try await SimulatedCloudServer(cloud: cloud, host: host, port: port)
            if let urlFile {
                do { try Data((server.url + "\n").utf8).write(to: URL(fileURLWithPath: urlFile), options: .atomic) } catch {
                    await server.stop()
                    throw CommandFailure.cannotWrite(urlFile, errno: EIO)
                }
            }
            FileHandle.standardOutput.write(Data("cloud \(server.url)\n".utf8))
            let signal = await SignalWait.next([SIGINT, SIGTERM])
            await server.stop()
            let calls = cloud.callCounts
            FileHandle.standardOutput.write(Data("stopped by signal \(signal): \(calls.api) API calls (\(calls.keysAccepted) keys accepted), \(calls.connects) device connects\n".utf8))
        }
    }

    /// "127.0.0.1:0" → ("127.0.0.1", 0); "[::1]:8080" → ("::1", 8080).
    static func address(_ text: String) throws -> (String, Int) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
            throw CommandFailure(kind: "usage", message: "--listen \(text) is not HOST:PORT (e.g. 127.0.0.1:0)", exit: .usage)
        }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host, port)
    }

    /// The token: the file's first line, surrounding whitespace removed (never printed).
    static func readToken(_ path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CommandFailure(kind: "fileNotFound", message: "\(path): the token file cannot be read", context: ["file": path], exit: .noInput)
        }
        guard data.count <= 4096 else {
            throw CommandFailure(kind: "usage", message: "\(path) is not a token file (over 4 KiB)", context: ["file": path], exit: .usage)
        }
        return String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline).first
            .map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
    }
}
