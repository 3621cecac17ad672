import Audit
import Testing

@Suite("HTML text escaping")
struct HTMLTextTests {
    @Test("the five markup characters become entities, in element text and either quoted attribute")
    func markupCharacters() {
        #expect(HTMLText.escaped(#"<a title="x" alt='y'>Tom & Jerry</a>"#)
                == "&lt;a title=&quot;x&quot; alt=&#39;y&#39;&gt;Tom &amp; Jerry&lt;/a&gt;")
    }

    @Test("the ampersand is escaped first: an entity already in the text is shown, not interpreted")
    func ampersandFirst() {
        #expect(HTMLText.escaped("&lt;script&gt;") == "&amp;lt;script&amp;gt;")
        #expect(HTMLText.escaped("&quot;&amp;") == "&amp;quot;&amp;amp;")
    }

    @Test("non-ASCII text is kept as it is")
    func nonASCIIUntouched() {
        let text = "Zürich — 東京 🔑 e\u{301}"
        #expect(HTMLText.escaped(text) == text)
    }

    @Test("a quote or bracket followed by a combining mark is still escaped")
    func combiningMarks() {
        #expect(HTMLText.escaped("\"\u{301}") == "&quot;\u{301}")
        #expect(HTMLText.escaped("<\u{338}") == "&lt;\u{338}")
    }

    @Test("control characters other than newline and tab are shown as ?")
    func controlCharacters() {
        #expect(HTMLText.escaped("a\u{1B}[2Jb\u{0}c") == "a?[2Jb?c")
        #expect(HTMLText.escaped("line\n\tnext") == "line\n\tnext")
    }
}
