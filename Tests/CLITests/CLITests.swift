import Foundation
import Testing

@Suite struct KeylineHelp {
    @Test func helpDocumentsExitCodes() throws {
        let result = try KeylineBinary.run(["--help"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("EXIT CODES"))
        #expect(result.stdout.contains("65"))
    }
}
