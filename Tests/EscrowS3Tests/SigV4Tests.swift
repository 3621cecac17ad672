import Foundation
import Testing
@testable import Age
@testable import EscrowS3

/// SigV4 header signing against the published suite (awslabs/aws-c-auth
/// tests/aws-signing-test-suite/v4; the vectors used and their source commits are listed in
/// Fixtures/sigv4/README.md). Each vector is a signed request plus its context: the test removes
/// what the signer adds (Authorization, X-Amz-Date, X-Amz-Security-Token), signs again at the
/// context's time with its credentials, and must produce the same Authorization line.
@Suite struct SigV4Tests {
    static let directory = Bundle.module.resourceURL!.appendingPathComponent("Fixtures/sigv4")

    static func vectorNames() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { !$0.hasSuffix(".md") }.sorted()
    }

    struct Context: Decodable {
        struct Credentials: Decodable {
            let access_key_id: String
            let secret_access_key: String
            let token: String?
        }
        let credentials: Credentials
        let normalize: Bool
        let region: String
        let service: String
        let timestamp: String
    }

    struct Vector {
        let request: SigV4Signer.Request
        let authorization: String
        let context: Context
    }

    static func load(_ name: String) throws -> Vector {
        let folder = directory.appendingPathComponent(name)
        let context = try JSONDecoder().decode(Context.self, from: Data(contentsOf: folder.appendingPathComponent("context.json")))
        let text = try String(contentsOf: folder.appendingPathComponent("header-signed-request.txt"), encoding: .utf8)
        let (head, body) = text.range(of: "\n\n").map { (String(text[..<$0.lowerBound]), String(text[$0.upperBound...])) } ?? (text, "")
        var lines = head.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let requestLine = lines.removeFirst().split(separator: " ")
        let method = String(requestLine[0])
        let target = requestLine[1..<(requestLine.count - 1)].joined(separator: " ")
        var headers: [(name: String, value: String)] = []
        for line in lines {
            if line.first == " " || line.first == "\t", let last = headers.last {
                // A continuation line: in this suite, another value of the same header
                // (get-header-value-multiline's canonical form is "value1,value2,value3").
                headers.append((last.name, line))
                continue
            }
            let colon = line.firstIndex(of: ":")!
            headers.append((String(line[..<colon]), String(line[line.index(after: colon)...])))
        }
        let authorization = headers.first { $0.name.lowercased() == "authorization" }!.value
        let added: Set<String> = ["authorization", "x-amz-date", "x-amz-security-token"]
        headers.removeAll { added.contains($0.name.lowercased()) }
        let path = target.split(separator: "?", maxSplits: 1).first.map(String.init) ?? "/"
        let query = target.contains("?") ? SigV4Signer.parseQuery(String(target.split(separator: "?", maxSplits: 1)[1])) : []
        let request = SigV4Signer.Request(method: method, path: path, query: query, headers: headers,
                                          payloadSHA256: Age.sha256(Array(body.utf8)))
        return Vector(request: request, authorization: authorization, context: context)
    }

    @Test func suiteIsPresent() {
        #expect(Self.vectorNames().count >= 20)
    }

    @Test(arguments: vectorNames())
    func signsLikeTheSuite(_ name: String) throws {
        let vector = try Self.load(name)
        let signer = SigV4Signer(region: vector.context.region, service: vector.context.service,
                                 normalizePath: vector.context.normalize)
        let credentials = AWSCredentials(accessKeyID: vector.context.credentials.access_key_id,
                                         secretAccessKey: vector.context.credentials.secret_access_key,
                                         sessionToken: vector.context.credentials.token)
        let date = try #require(ISO8601DateFormatter().date(from: vector.context.timestamp))
        let added = signer.sign(vector.request, credentials: credentials, date: date)
        #expect(added.first { $0.name == "X-Amz-Date" }?.value == "20150830T123600Z")
        #expect(added.first { $0.name == "Authorization" }?.value == vector.authorization, "\(name)")
    }

    /// The suite's post-x-www-form-urlencoded intermediate values (AWS General Reference example
    /// keys): the string to sign for a known canonical request.
    @Test func stringToSignOfTheExample() {
        let signer = SigV4Signer(region: "us-east-1", service: "service", normalizePath: true)
        let canonical = "POST\n/\n\ncontent-length:13\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\ncontent-length;content-type;host;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        #expect(signer.stringToSign(canonicalRequest: canonical, timestamp: "20150830T123600Z",
                                    scope: "20150830/us-east-1/service/aws4_request")
                == "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n0eccf3fbe5a3c5d3df1d87c98cdf5dbde190d26aabdd91c9407db930a0c00896")
    }

    @Test func credentialsNeverPrint() {
        let credentials = AWSCredentials(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                                         sessionToken: "token-value")
        for text in [String(describing: credentials), String(reflecting: credentials), "\(credentials)"] {
            #expect(!text.contains("wJalr") && !text.contains("token-value"))
        }
    }
}
