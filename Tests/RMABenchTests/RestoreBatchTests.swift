import Foundation
import RMABench
import Testing
import TestSupport

/// `restore --batch FILE.csv` rows as RFC 4180 writes them (issue 21, "Smaller").
@Suite struct RestoreBatchTests {
    static func parse(_ text: String) throws -> [RestoreRequest] {
        let scratch = try ScratchDirectory(label: "batch")
        defer { scratch.remove() }
        let file = scratch.url.appendingPathComponent("tray.csv")
        try text.write(to: file, atomically: true, encoding: .utf8)
        return try RestoreBatch.parse(path: file.path, product: "acme")
    }

    @Test func quotedFieldsKeepTheirCommasAndQuotes() throws {
        let requests = try Self.parse("""
            device_id,reason,ticket
            e00fce68aaaaaaaaaaaaaaaa,"bricked, after OTA","RMA-1"
            e00fce68bbbbbbbbbbbbbbbb, "said ""no key"", twice" , RMA-2
            e00fce68cccccccccccccccc,plain,
            """)
        #expect(requests.map(\.deviceID) == ["e00fce68aaaaaaaaaaaaaaaa", "e00fce68bbbbbbbbbbbbbbbb", "e00fce68cccccccccccccccc"])
        #expect(requests.map(\.reason) == ["bricked, after OTA", "said \"no key\", twice", "plain"])
        #expect(requests.map(\.ticket) == ["RMA-1", "RMA-2", nil])
    }

    @Test func anUnclosedQuoteIsRefusedWithItsLine() throws {
        #expect(throws: RestoreBatchError.unterminatedQuote(file: "", line: 2)) {
            do { _ = try Self.parse("e00fce68aaaaaaaaaaaaaaaa,x\ne00fce68bbbbbbbbbbbbbbbb,\"open, never closed\n") } catch let error as RestoreBatchError {
                guard case .unterminatedQuote(_, let line) = error else { throw error }
                throw RestoreBatchError.unterminatedQuote(file: "", line: line)
            }
        }
    }
}
