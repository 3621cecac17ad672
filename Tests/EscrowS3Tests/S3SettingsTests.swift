import Foundation
import Testing
import TestSupport
@testable import Escrow
@testable import EscrowS3

/// Store URIs, the AWS variables and files, and the factory that picks a store.
@Suite struct S3SettingsTests {
    @Test func uriWithTheStandardVariables() throws {
        let settings = try S3StoreSettings.parse("s3://escrow-bucket/factory/a", environment: [
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_DEFAULT_REGION": "eu-west-1"])
        #expect(settings.bucket == "escrow-bucket" && settings.prefix == "factory/a" && settings.region == "eu-west-1")
        #expect(settings.endpoint.absoluteString == "http://127.0.0.1:9000" && settings.pathStyle)
        #expect(settings.retention == nil)
        #expect(settings.storeURI == "s3://escrow-bucket/factory/a")
        let key = try EscrowObjectKey(product: "p", deviceID: String(repeating: "a", count: 24), publicKeySHA256: String(repeating: "b", count: 64))
        #expect(settings.location(of: settings.objectName(key)) == ("127.0.0.1:9000", "/escrow-bucket/factory/a/\(key.path)"))
        // AWS_REGION wins over AWS_DEFAULT_REGION; AWS_ENDPOINT_URL_S3 over AWS_ENDPOINT_URL.
        let specific = try S3StoreSettings.parse("s3://escrow-bucket", environment: [
            "AWS_REGION": "ap-south-1", "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_ENDPOINT_URL": "http://a:1", "AWS_ENDPOINT_URL_S3": "https://b:2"])
        #expect(specific.region == "ap-south-1" && specific.endpoint.absoluteString == "https://b:2" && specific.prefix == "")
    }

    @Test func plainHTTPOnlyToLoopback() throws {
        for endpoint in ["http://127.0.0.1:9000", "http://localhost:9000", "http://127.1.2.3", "http://[::1]:9000"] {
            #expect(try S3StoreSettings.parse("s3://escrow-bucket?endpoint=\(endpoint)", environment: [:]).endpoint
                    == URL(string: endpoint)!)
        }
        for endpoint in ["http://minio.factory:9000", "http://10.0.0.5:9000", "http://128.0.0.1", "http://127.0.0.1.evil.example"] {
            #expect {
                _ = try S3StoreSettings.parse("s3://escrow-bucket", environment: ["AWS_ENDPOINT_URL": endpoint])
            } throws: { error in
                guard case EscrowStoreError.invalidStore(let reason) = error else { return false }
                return reason.contains(endpoint) && reason.contains("https://")
            }
        }
        #expect(try S3StoreSettings.parse("s3://escrow-bucket?endpoint=https://minio.factory:9000", environment: [:])
                .endpoint.absoluteString == "https://minio.factory:9000")
    }

    @Test func awsItselfByDefault() throws {
        let settings = try S3StoreSettings.parse("s3://escrow-bucket/x/", environment: ["AWS_REGION": "eu-central-1"])
        #expect(settings.endpoint.absoluteString == "https://s3.eu-central-1.amazonaws.com" && !settings.pathStyle)
        #expect(settings.location(of: "x/k") == ("escrow-bucket.s3.eu-central-1.amazonaws.com", "/x/k"))
        #expect(settings.prefix == "x")
        #expect(try S3StoreSettings.parse("s3://escrow.bucket", environment: [:]).pathStyle)  // dotted: path style
        #expect(try S3StoreSettings.parse("s3://escrow-bucket", environment: [:]).region == "us-east-1")
    }

    @Test func uriParameters() throws {
        let settings = try S3StoreSettings.parse(
            "s3://escrow-bucket/p?region=us-west-2&endpoint=https://minio.factory.example:9000&lock=COMPLIANCE&retain-days=3650",
            environment: ["AWS_REGION": "eu-west-1"])
        #expect(settings.region == "us-west-2" && settings.endpoint.absoluteString == "https://minio.factory.example:9000")
        #expect(settings.retention == ObjectLockRetention(mode: .compliance, days: 3650))
        #expect(settings.prefix == "p")
    }

    @Test(arguments: ["s3://", "s3://UPPER/p", "s3://ab", "s3://bucket-ok/../x", "s3://bucket-ok/p?lock=FOREVER&retain-days=1",
                      "s3://bucket-ok/p?lock=COMPLIANCE", "s3://bucket-ok/p?retain-days=5", "s3://bucket-ok/p?colour=red",
                      "s3://bucket-ok/p?endpoint=ftp://x", "s3://bucket-ok/p?endpoint=https://x/path", "s3://bucket-ok/.hidden"])
    func badURIsAreRefused(_ uri: String) {
        #expect(throws: EscrowStoreError.self) { try S3StoreSettings.parse(uri, environment: [:]) }
    }

    @Test func credentialsFromVariablesThenProfiles() throws {
        let fromEnvironment = try AWSCredentialSources.credentials(environment: [
            "AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "secret-env", "AWS_SESSION_TOKEN": "token-env"])
        #expect(fromEnvironment.accessKeyID == "AKIDENV" && fromEnvironment.sessionToken == "token-env")

        let dir = try ScratchDirectory()
        defer { dir.remove() }
        try dir.write("credentials", Array("""
            [default]
            aws_access_key_id = AKIDDEFAULT
            aws_secret_access_key = secret-default
            # a comment
            [factory]
            aws_access_key_id=AKIDFACTORY
            aws_secret_access_key=secret-factory
            aws_session_token=token-factory
            """.utf8))
        try dir.write("config", Array("[default]\nregion = eu-north-1\n[profile factory]\nregion = us-east-2\n".utf8))
        let files = ["AWS_SHARED_CREDENTIALS_FILE": dir.path("credentials"), "AWS_CONFIG_FILE": dir.path("config")]
        let standard = try AWSCredentialSources.credentials(environment: files)
        #expect(standard.accessKeyID == "AKIDDEFAULT" && standard.sessionToken == nil)
        #expect(AWSCredentialSources.profileRegion(environment: files) == "eu-north-1")
        var factory = files
        factory["AWS_PROFILE"] = "factory"
        let profile = try AWSCredentialSources.credentials(environment: factory)
        #expect(profile.accessKeyID == "AKIDFACTORY" && profile.secretAccessKey == "secret-factory" && profile.sessionToken == "token-factory")
        #expect(AWSCredentialSources.profileRegion(environment: factory) == "us-east-2")
        let store = try S3EscrowStore(uri: "s3://escrow-bucket", environment: factory)
        #expect(store.settings.region == "us-east-2")
    }

    @Test func missingCredentialsNameThePlacesNotValues() {
        let environment = ["AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials", "AWS_CONFIG_FILE": "/nonexistent/config"]
        #expect(throws: S3StoreError.self) { try AWSCredentialSources.credentials(environment: environment) }
        do {
            _ = try AWSCredentialSources.credentials(environment: ["AWS_ACCESS_KEY_ID": "AKIDONLY"])
            Issue.record("half credentials accepted")
        } catch {
            #expect(String(describing: error).contains("AWS_SECRET_ACCESS_KEY"))
            #expect(!String(describing: error).contains("AKIDONLY"))
        }
    }

    @Test func factoryPicksTheStoreByLocation() throws {
        let environment = ["AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s", "AWS_ENDPOINT_URL": "http://127.0.0.1:1"]
        #expect(try EscrowStores.open("/tmp/escrow", environment: environment) is DirectoryEscrowStore)
        #expect(try EscrowStores.open("relative/escrow", environment: environment) is DirectoryEscrowStore)
        let file = try #require(try EscrowStores.open("file:///var/escrow", environment: environment) as? DirectoryEscrowStore)
        #expect(file.storeURI == "file:///var/escrow")
        let s3 = try #require(try EscrowStores.open("s3://escrow-bucket/line-1", environment: environment) as? S3EscrowStore)
        #expect(s3.storeURI == "s3://escrow-bucket/line-1")
        #expect(throws: EscrowStoreError.self) { try EscrowStores.open("gs://bucket", environment: environment) }
        #expect(throws: EscrowStoreError.self) { try EscrowStores.validate("s3://Bad_Bucket", environment: [:]) }
        try EscrowStores.validate("s3://escrow-bucket/p", environment: [:])  // no credentials needed to validate
    }
}
