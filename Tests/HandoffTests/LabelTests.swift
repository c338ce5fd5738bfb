import Foundation
import Testing

@testable import Handoff

@Suite("Labels")
struct LabelTests {
    @Test(
        "topic levels are the canonical percent-encoding",
        arguments: [
            ("counter", "counter"),
            ("a/b", "a%2Fb"),
            ("$SYS", "%24SYS"),
            ("+#", "%2B%23"),
            ("é", "%C3%A9"),
            ("50%", "50%25"),
            ("A-z.0_9~", "A-z.0_9~"),
            ("two words", "two%20words"),
            ("🙂", "%F0%9F%99%82"),
        ]
    )
    func topicLevel(raw: String, level: String) throws {
        let label = try HandoffLabel(raw)
        #expect(label.topicLevel == level)
        #expect(try HandoffLabel(topicLevel: level) == label)
        #expect(label.rawValue == raw)
        #expect(label.description == raw)
    }

    @Test("special characters round-trip and never leak MQTT syntax into the topic level")
    func specialCharactersRoundTrip() throws {
        let raws = [
            "+", "#", "$", "/", "%", "%25", "$share/x", "a+b#c/d$e%f", " ", "🙂🙃", "日本語", "\u{2028}",
            "\u{A0}", "\u{FEFF}", "e\u{301}", "..", "~",
        ]
        for raw in raws {
            let label = try HandoffLabel(raw)
            let level = label.topicLevel
            #expect(!level.isEmpty)
            #expect(!level.hasPrefix("$"))
            #expect(!level.contains("/") && !level.contains("+") && !level.contains("#") && !level.contains("\0"))
            #expect(level.utf8.allSatisfy { $0 < 0x80 })
            #expect(try HandoffLabel(topicLevel: level).rawValue.utf8.elementsEqual(raw.utf8))
        }
    }

    @Test(
        "invalid labels are refused",
        arguments: ["", "\0", "a\0b", "line\nbreak", "tab\t", "\u{7F}", "\u{85}", "\u{9F}", "\u{1B}[31m"]
    )
    func invalidLabels(raw: String) {
        #expect(throws: HandoffError.self) { try HandoffLabel(raw) }
        do {
            _ = try HandoffLabel(raw)
        } catch {
            guard error.code == .invalidLabel else {
                Issue.record("unexpected error \(error)")
                return
            }
            #expect(!error.detail.isEmpty)
            #expect(!error.description.contains("\n"))
        }
    }

    @Test("labels are at most 200 UTF-8 bytes")
    func length() throws {
        _ = try HandoffLabel(String(repeating: "a", count: 200))
        _ = try HandoffLabel(String(repeating: "🙂", count: 50))  // 4 bytes each
        #expect(throws: HandoffError.self) { try HandoffLabel(String(repeating: "a", count: 201)) }
        #expect(throws: HandoffError.self) { try HandoffLabel(String(repeating: "🙂", count: 50) + "a") }
        #expect(throws: HandoffError.self) { try HandoffLabel(String(repeating: "é", count: 101)) }
    }

    @Test(
        "non-canonical or invalid topic levels are refused",
        arguments: [
            "", "%2f", "%2", "%", "%G0", "a/b", "a+b", "#", "$SYS", "%41", "%7E", "é", "%C3", "%FF", "%00", "%0A",
            "%C3%a9", " ",
        ]
    )
    func invalidTopicLevels(level: String) {
        #expect(throws: HandoffError.self) { try HandoffLabel(topicLevel: level) }
    }

    @Test("labels compare by UTF-8 bytes, so canonically equivalent spellings are different labels")
    func byteEquality() throws {
        let precomposed = try HandoffLabel("\u{E9}")
        let decomposed = try HandoffLabel("e\u{301}")
        #expect(precomposed != decomposed)
        #expect(Set([precomposed, decomposed]).count == 2)
        #expect(precomposed.topicLevel != decomposed.topicLevel)
        #expect(try HandoffLabel("x") == HandoffLabel("x"))
    }

    @Test("labels encode as a plain string and validate when decoded")
    func codable() throws {
        let label = try HandoffLabel("a/b")
        let data = try JSONEncoder().encode([label])
        #expect(String(decoding: data, as: UTF8.self) == #"["a\/b"]"#)
        #expect(try JSONDecoder().decode([HandoffLabel].self, from: data) == [label])
        #expect(throws: DecodingError.self) { try JSONDecoder().decode([HandoffLabel].self, from: Data(#"[""]"#.utf8)) }
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode([HandoffLabel].self, from: Data(#"["a\u0000"]"#.utf8))
        }
    }

    @Test("every single byte label round-trips through its topic level")
    func allASCII() throws {
        for value in UInt8(0x20)...UInt8(0x7E) {
            let raw = String(decoding: [value], as: UTF8.self)
            let label = try HandoffLabel(raw)
            #expect(try HandoffLabel(topicLevel: label.topicLevel) == label)
            #expect(label.topicLevel.count == (PercentEncoding.isUnreserved(value) ? 1 : 3))
        }
    }
}

@Suite("Ids")
struct IDTests {
    @Test("valid ids", arguments: ["a", "A-Z_0-9", String(repeating: "x", count: 64), "7d444840-9dc0-11d1-b245-5ffdce74fad2"])
    func valid(raw: String) throws {
        let id = try HandoffID(raw)
        #expect(id.rawValue == raw)
        #expect(id.description == raw)
    }

    @Test("invalid ids", arguments: ["", String(repeating: "x", count: 65), "a/b", "a b", "a.b", "é", "a+b", "#", "$x", "\0"])
    func invalid(raw: String) {
        #expect(throws: HandoffError.invalidID(raw)) { try HandoffID(raw) }
    }

    @Test("random ids are lower-case UUIDs and distinct")
    func random() throws {
        let ids = (0..<100).map { _ in HandoffID.random() }
        #expect(Set(ids).count == 100)
        for id in ids {
            #expect(id.rawValue.count == 36)
            #expect(id.rawValue == id.rawValue.lowercased())
            #expect(try HandoffID(id.rawValue) == id)
        }
    }

    @Test("ids validate when decoded")
    func codable() throws {
        let id = HandoffID.random()
        #expect(try JSONDecoder().decode([HandoffID].self, from: JSONEncoder().encode([id])) == [id])
        #expect(throws: DecodingError.self) { try JSONDecoder().decode([HandoffID].self, from: Data(#"["a b"]"#.utf8)) }
    }
}
