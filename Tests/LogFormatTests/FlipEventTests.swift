import XCTest
@testable import LogFormat

func hexBytes(_ hex: String) -> [UInt8] {
    var bytes: [UInt8] = []
    var index = hex.startIndex
    while index < hex.endIndex {
        let next = hex.index(index, offsetBy: 2)
        bytes.append(UInt8(hex[index..<next], radix: 16)!)
        index = next
    }
    return bytes
}

final class FlipEventTests: XCTestCase {
    let example = FlipEvent(
        resource: "prod/eu-1/payments/leader", from: "node-a", to: "node-b", polarity: -1, actor: "raft",
        reason: "lease-expired", epoch: 7, seq: 1042, time: 1_764_000_000_123)

    /// Golden vectors, computed independently (Python, LEB128 and zigzag by hand).
    func testGoldenVectors() throws {
        let cases: [(FlipEvent, String)] = [
            (example, "0101ff079208f6a1bfe9d666066e6f64652d61066e6f64652d6204726166740d6c656173652d65787069726564"),
            (FlipEvent(resource: "r", to: "on", epoch: 0, seq: 0, time: -1), "01000000000100026f6e0000"),
            (FlipEvent(resource: "r", to: "ü", polarity: 0, epoch: FlipEvent.integerMax, seq: FlipEvent.integerMax, time: -FlipEvent.integerMax),
             "010100ffffffffffffff0fffffffffffffff0ffdffffffffffff1f0002c3bc0000"),
        ]
        for (event, hex) in cases {
            XCTAssertEqual(event.encodedValue(), hexBytes(hex), "\(event)")
            XCTAssertEqual(try FlipEvent.decode(key: Array(event.resource.utf8), value: hexBytes(hex)), event)
        }
    }

    func testAbsentPolarityIsNotZero() throws {
        let absent = FlipEvent(resource: "r", to: "on", epoch: 1, seq: 1, time: 1)
        var zero = absent
        zero.polarity = 0
        XCTAssertNotEqual(absent.encodedValue(), zero.encodedValue())
        XCTAssertNil(try FlipEvent.decode(key: absent.key, value: absent.encodedValue()).polarity)
        XCTAssertEqual(try FlipEvent.decode(key: zero.key, value: zero.encodedValue()).polarity, 0)
        XCTAssertEqual(absent.resolvedPolarity(map: ["on": 1]), 1, "the topic's map gives an absent polarity")
        XCTAssertEqual(zero.resolvedPolarity(map: ["on": 1]), 0, "a given polarity wins over the map")
        XCTAssertEqual(absent.resolvedPolarity(map: ["off": -1]), 0, "neither: 0")
        XCTAssertEqual(absent.resolvedPolarity(map: nil), 0)
    }

    func expectInvalid(_ event: FlipEvent, field: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try event.validate(), file: file, line: line) { error in
            XCTAssertEqual((error as? FlipEventError)?.field, field, "\(error)", file: file, line: line)
        }
    }

    func testEveryFieldRuleOfTheSpecIsEnforced() {
        var event = example
        event.resource = ""; expectInvalid(event, field: "resource")
        event.resource = String(repeating: "a", count: 257); expectInvalid(event, field: "resource")
        event.resource = "tab\there"; expectInvalid(event, field: "resource")
        event.resource = "del\u{7F}"; expectInvalid(event, field: "resource")
        event.resource = "c1\u{85}"; expectInvalid(event, field: "resource")
        event = example; event.from = String(repeating: "f", count: 65); expectInvalid(event, field: "from")
        event = example; event.to = ""; expectInvalid(event, field: "to")
        event = example; event.to = String(repeating: "t", count: 65); expectInvalid(event, field: "to")
        event = example; event.polarity = 2; expectInvalid(event, field: "polarity")
        event = example; event.actor = String(repeating: "a", count: 129); expectInvalid(event, field: "actor")
        event = example; event.reason = String(repeating: "r", count: 129); expectInvalid(event, field: "reason")
        event = example; event.epoch = -1; expectInvalid(event, field: "epoch")
        event = example; event.epoch = FlipEvent.integerMax + 1; expectInvalid(event, field: "epoch")
        event = example; event.seq = -1; expectInvalid(event, field: "seq")
        event = example; event.time = FlipEvent.integerMax + 1; expectInvalid(event, field: "time")
        event = example; event.time = -FlipEvent.integerMax - 1; expectInvalid(event, field: "time")
        // The limits themselves are allowed.
        event = example
        event.resource = String(repeating: "é", count: 128)  // 256 bytes
        event.from = String(repeating: "f", count: 64)
        event.to = String(repeating: "t", count: 64)
        event.actor = String(repeating: "a", count: 128)
        event.time = -FlipEvent.integerMax
        XCTAssertNoThrow(try event.validate())
    }

    func testDamagedValuesAreRefusedNamingAField() {
        let value = example.encodedValue()
        for length in 0..<value.count {
            XCTAssertThrowsError(try FlipEvent.decode(key: example.key, value: Array(value[..<length])), "length \(length)")
        }
        XCTAssertThrowsError(try FlipEvent.decode(key: example.key, value: value + [0])) { XCTAssertEqual(($0 as? FlipEventError)?.field, "value") }
        var badVersion = value
        badVersion[0] = 2
        XCTAssertThrowsError(try FlipEvent.decode(key: example.key, value: badVersion)) { XCTAssertEqual(($0 as? FlipEventError)?.field, "value") }
        XCTAssertThrowsError(try FlipEvent.decode(key: nil, value: value)) { XCTAssertEqual(($0 as? FlipEventError)?.field, "resource") }
        XCTAssertThrowsError(try FlipEvent.decode(key: [0xFF], value: value)) { XCTAssertEqual(($0 as? FlipEventError)?.field, "resource") }
        XCTAssertThrowsError(try FlipEvent.decode(key: example.key, value: nil)) { XCTAssertEqual(($0 as? FlipEventError)?.field, "value") }
    }

    func testJSONRoundTripInSpecKeyOrder() throws {
        let line = #"{"resource":"prod/eu-1/payments/leader","from":"node-a","to":"node-b","polarity":-1,"actor":"raft","reason":"lease-expired","epoch":7,"seq":1042,"time":1764000000123}"#
        let event = try FlipEvent.fromJSON(StrictJSON.parse(line))
        XCTAssertEqual(event, example)
        XCTAssertEqual(event.json(resolvedPolarity: -1), line)
        let minimal = try FlipEvent.fromJSON(StrictJSON.parse(#"{"resource":"r","to":"on","epoch":0,"seq":0,"time":-5,"from":null,"polarity":null}"#))
        XCTAssertEqual(minimal, FlipEvent(resource: "r", to: "on", epoch: 0, seq: 0, time: -5))
        XCTAssertEqual(minimal.json(resolvedPolarity: 0), #"{"resource":"r","from":"","to":"on","polarity":0,"actor":"","reason":"","epoch":0,"seq":0,"time":-5}"#)
    }

    func testJSONRefusesWhatWouldLoseInformation() {
        func field(_ line: String) -> String? {
            do {
                _ = try FlipEvent.fromJSON(StrictJSON.parse(line))
                return nil
            } catch let error as FlipEventError {
                return error.field
            } catch {
                return "json"
            }
        }
        let base = #""resource":"r","to":"on","epoch":1,"seq":2"#
        XCTAssertEqual(field("{\(base),\"time\":7.0}"), "time", "7.0 is not an integer")
        XCTAssertEqual(field("{\(base),\"time\":1e3}"), "time", "1e3 is not an integer")
        XCTAssertEqual(field("{\(base),\"time\":\"5\"}"), "time", "a string is not an integer")
        XCTAssertEqual(field("{\(base),\"time\":5,\"tme\":1}"), "tme", "an unknown key is named")
        XCTAssertEqual(field("{\(base)}"), "time", "time is required")
        XCTAssertEqual(field("{\(base),\"time\":5,\"polarity\":2}"), "polarity")
        XCTAssertEqual(field("{\(base),\"time\":99999999999999999999}"), "time", "out of Int64 range")
        XCTAssertEqual(field("{\(base),\"time\":9007199254740992}"), "time", "2^53 is past the limit")
        XCTAssertEqual(field("[1]"), "event")
        XCTAssertEqual(field("{\(base),\"time\":5,\"to\":\"x\"}"), "json", "a duplicate key is refused by the parser")
        XCTAssertNil(field("{\(base),\"time\":9007199254740991}"), "2^53-1 is allowed")
    }
}

final class StrictJSONTests: XCTestCase {
    func testValuesAndNumbersKeepTheirText() throws {
        let value = try StrictJSON.parse(#" {"a": [1, -0.5, 1E+3, true, false, null], "b": "x\"\\\/\n\u00e9\ud83d\ude00", "c": {}} "#)
        guard case .object(let pairs) = value else { return XCTFail("not an object") }
        XCTAssertEqual(pairs.map(\.key), ["a", "b", "c"])
        XCTAssertEqual(pairs[0].value, .array([.number("1"), .number("-0.5"), .number("1E+3"), .bool(true), .bool(false), .null]))
        XCTAssertEqual(pairs[1].value, .string("x\"\\/\né😀"))
        XCTAssertEqual(JSONValue.number("12").integer, 12)
        XCTAssertNil(JSONValue.number("12.0").integer)
        XCTAssertNil(JSONValue.number("1e2").integer)
        XCTAssertEqual(JSONValue.number("-9223372036854775808").integer, Int64.min)
    }

    func testMalformedInputIsRefused() {
        for text in ["", "{", "{\"a\":}", "{\"a\" 1}", "{\"a\":1,}", "[1,]", "01", "1.", "-", ".5", "+1", "1e", "\"\\x\"", "\"a", "nul",
                     "{\"a\":1} x", "\"\u{1}\"", "\"\\ud800\"", "\"\\udc00\"", "{a:1}", "{\"a\":1,\"a\":2}",
                     String(repeating: "[", count: 40) + String(repeating: "]", count: 40)] {
            XCTAssertThrowsError(try StrictJSON.parse(text), text)
        }
        XCTAssertThrowsError(try StrictJSON.parse([0x22, 0xFF, 0x22]), "invalid UTF-8 in a string")
    }

    func testQuoteEscapesWhatJSONRequires() throws {
        let text = "a\"b\\c\nd\u{1}e\u{7F}é"
        let quoted = StrictJSON.quote(text)
        XCTAssertEqual(quoted, #""a\"b\\c\nd\u0001e\u007fé""#)
        XCTAssertEqual(try StrictJSON.parse(quoted), .string(text))
    }
}
