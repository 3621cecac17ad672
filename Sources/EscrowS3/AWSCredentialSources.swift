import Foundation

/// The standard places AWS tools take credentials and the region from, in their order:
/// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN; then the profile
/// (AWS_PROFILE, else `default`) in the shared credentials file (AWS_SHARED_CREDENTIALS_FILE,
/// else ~/.aws/credentials) and the config file (AWS_CONFIG_FILE, else ~/.aws/config, where a
/// profile's section is `[profile NAME]`). Values are never printed; errors name only the places.
enum AWSCredentialSources {
    static func credentials(environment: [String: String]) throws(S3StoreError) -> AWSCredentials {
        func value(_ key: String) -> String? { environment[key].flatMap { $0.isEmpty ? nil : $0 } }
        if let id = value("AWS_ACCESS_KEY_ID") {
            guard let secret = value("AWS_SECRET_ACCESS_KEY") else {
                throw S3StoreError.credentials("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not")
            }
            return AWSCredentials(accessKeyID: id, secretAccessKey: secret, sessionToken: value("AWS_SESSION_TOKEN"))
        }
        let profile = value("AWS_PROFILE") ?? "default"
        let path = value("AWS_SHARED_CREDENTIALS_FILE") ?? home(environment) + "/.aws/credentials"
        let configPath = value("AWS_CONFIG_FILE") ?? home(environment) + "/.aws/config"
        for (file, section) in [(path, profile), (configPath, profile == "default" ? "default" : "profile \(profile)")] {
            guard let settings = ini(file)[section] else { continue }
            if let id = settings["aws_access_key_id"], let secret = settings["aws_secret_access_key"] {
                return AWSCredentials(accessKeyID: id, secretAccessKey: secret, sessionToken: settings["aws_session_token"])
            }
        }
        throw S3StoreError.credentials(
            "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or give profile \"\(profile)\" keys in \(path)")
    }

    /// The region of the profile in the config file, if it names one.
    static func profileRegion(environment: [String: String]) -> String? {
        let profile = environment["AWS_PROFILE"].flatMap { $0.isEmpty ? nil : $0 } ?? "default"
        let path = environment["AWS_CONFIG_FILE"].flatMap { $0.isEmpty ? nil : $0 } ?? home(environment) + "/.aws/config"
        return ini(path)[profile == "default" ? "default" : "profile \(profile)"]?["region"]
    }

    static func home(_ environment: [String: String]) -> String {
        environment["HOME"] ?? FileManager.default.homeDirectoryForCurrentUser.path
    }

    /// A minimal INI reader (the AWS files' format): `[section]`, `key = value`, `#`/`;` comments.
    static func ini(_ path: String) -> [String: [String: String]] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [:] }
        var sections: [String: [String: String]] = [:]
        var current: String?
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("["), line.hasSuffix("]") {
                current = line.dropFirst().dropLast().trimmingCharacters(in: .whitespaces)
                continue
            }
            guard let current, let equals = line.firstIndex(of: "=") else { continue }
            let key = line[..<equals].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            sections[current, default: [:]][key] = value
        }
        return sections
    }
}
