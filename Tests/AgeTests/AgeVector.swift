import Crypto
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One C2SP/CCTV age test vector (format in Fixtures/age/README.md): a textual header, a blank
/// line, then the age file, possibly zlib-compressed.
struct AgeVector: CustomStringConvertible {
    let name: String
    let expect: String
    let payloadSHA256: String?
    let identities: [String]
    let armored: Bool
    let file: [UInt8]

    var description: String { name }

    static let directory: URL = Bundle.module.resourceURL!.appendingPathComponent("Fixtures/age")

    static func allNames() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { $0 != "README.md" }.sorted()
    }

    init(named name: String) throws {
        let raw = Array(try Data(contentsOf: AgeVector.directory.appendingPathComponent(name)))
        guard let split = raw.indices.dropLast().first(where: { raw[$0] == 0x0a && raw[$0 + 1] == 0x0a }) else {
            throw VectorError.noBlankLine(name)
        }
        var expect = "", payload: String?, identities: [String] = [], armored = false, compressed = false
        for line in String(decoding: raw[..<split], as: UTF8.self).split(separator: "\n") {
            guard let colon = line.range(of: ": ") else { throw VectorError.badHeaderLine(name) }
            let key = line[..<colon.lowerBound], value = String(line[colon.upperBound...])
            switch key {
            case "expect": expect = value
            case "payload": payload = value
            case "identity": identities.append(value)
            case "armored": armored = value == "yes"
            case "compressed":
                guard value == "zlib" else { throw VectorError.unknownCompression(name) }
                compressed = true
            case "file key", "comment": break
            default: throw VectorError.unknownKey(name, String(key))
            }
        }
        let body = Array(raw[(split + 2)...])
        self.name = name
        self.expect = expect
        self.payloadSHA256 = payload
        self.identities = identities
        self.armored = armored
        self.file = compressed ? try Zlib.inflate(body) : body
    }

    enum VectorError: Error {
        case noBlankLine(String), badHeaderLine(String), unknownKey(String, String), unknownCompression(String)
    }
}

/// zlib's `uncompress` from the system libz.so.1 (present on every Debian system: dpkg needs
/// it), loaded at run time so the package needs no extra system-library target for tests.
enum Zlib {
    typealias Uncompress = @convention(c) (UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<UInt>?, UnsafePointer<UInt8>?, UInt) -> Int32

    struct Failure: Error { let code: Int32 }

    static func inflate(_ compressed: [UInt8]) throws -> [UInt8] {
        guard let library = dlopen("libz.so.1", RTLD_NOW), let symbol = dlsym(library, "uncompress") else {
            throw Failure(code: -999)
        }
        let uncompress = unsafeBitCast(symbol, to: Uncompress.self)
        var capacity = max(compressed.count * 8, 1 << 16)
        while true {
            var out = [UInt8](repeating: 0, count: capacity)
            var length = UInt(capacity)
            let status = out.withUnsafeMutableBufferPointer { dest in
                compressed.withUnsafeBufferPointer { uncompress(dest.baseAddress, &length, $0.baseAddress, UInt($0.count)) }
            }
            if status == 0 { return Array(out[..<Int(length)]) }
            guard status == -5 else { throw Failure(code: status) } // Z_BUF_ERROR: grow and retry
            capacity *= 4
        }
    }
}

func sha256Hex<D: DataProtocol>(_ data: D) -> String {
    SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
}
