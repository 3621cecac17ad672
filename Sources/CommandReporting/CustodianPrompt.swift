import Age
import Custody
import Foundation
import LocalFiles

/// Asks a custodian at the bench for their age identity (`AGE-SECRET-KEY-1…`), with echo off, when
/// no `--custodian-identity` file opens their share. Only on a terminal: a script gets the refusal.
public enum CustodianPrompt {
    public static var onTerminal: CustodianIdentityPrompt? {
        guard isatty(STDIN_FILENO) == 1 else { return nil }
        return { path, custodian in
            try await offPool { read(path: path, custodian: custodian) }
        }
    }

    /// Blocking terminal read (off the cooperative pool; one at a time: a person types).
    static func read(path: String, custodian: String) -> X25519Identity? {
        FileHandle.standardError.write(Data("\(custodian): paste your age identity for \(path) (not shown), then Enter: ".utf8))
        var saved = termios()
        let hasTerminal = tcgetattr(STDIN_FILENO, &saved) == 0
        if hasTerminal {
            var quiet = saved
            quiet.c_lflag &= ~tcflag_t(ECHO)
            tcsetattr(STDIN_FILENO, TCSANOW, &quiet)
        }
        defer {
            if hasTerminal { tcsetattr(STDIN_FILENO, TCSANOW, &saved) }
            FileHandle.standardError.write(Data("\n".utf8))
        }
        guard let line = readLine(strippingNewline: true) else { return nil }
        return try? X25519Identity(line.trimmingCharacters(in: .whitespaces))
    }
}
