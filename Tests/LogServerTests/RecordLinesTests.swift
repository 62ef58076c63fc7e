import LogClient
import LogFormat
import WireProtocol
import XCTest

/// The produce and consume lines of Docs/design.md's contract, without a server.
final class RecordLinesTests: XCTestCase {
    func record(_ line: String, kind: TopicInfo.Kind = .raw) throws(RecordLineError) -> ProducerRecord {
        try RecordLines.record(from: Array(line.utf8), kind: kind)
    }

    func reason(_ line: String, kind: TopicInfo.Kind = .raw) -> String? {
        do {
            _ = try record(line, kind: kind)
            return nil
        } catch {
            return error.description
        }
    }

    func testARawRecordKeepsEveryField() throws {
        let parsed = try record(#"{"resource":"r/1","value":"héllo","headers":{"a":"1","b":""},"time":-1000,"partition":2}"#)
        XCTAssertEqual(parsed.key, Array("r/1".utf8))
        XCTAssertEqual(parsed.value, Array("héllo".utf8))
        XCTAssertEqual(parsed.headers, [RecordHeader(key: "a", value: Array("1".utf8)), RecordHeader(key: "b", value: []), RecordHeader(key: "time", value: Array("-1000".utf8))])
        XCTAssertEqual(parsed.partition, 2)
        XCTAssertEqual(try record(#"{"resource":"r","value_base64":"AP8="}"#).value, [0x00, 0xFF])
        XCTAssertNil(try record(#"{"resource":"r","value":null}"#).value)
    }

    func testEveryBrokenRuleIsInvalidWithItsReason() {
        let cases: [(String, String)] = [
            ("", "blank line"),
            ("   ", "blank line"),
            ("{", "not JSON"),
            ("[]", "must be a JSON object"),
            (#"{"value":"x"}"#, "resource is required"),
            (#"{"resource":7,"value":"x"}"#, "resource must be a string"),
            (#"{"resource":"","value":"x"}"#, "resource must be 1 to"),
            (#"{"resource":"r"}"#, "value (or value_base64) is required"),
            (#"{"resource":"r","value":"x","value_base64":"eA=="}"#, "not both"),
            (#"{"resource":"r","value":1}"#, "value must be a string or null"),
            (#"{"resource":"r","value_base64":"***"}"#, "not base64"),
            (#"{"resource":"r","value":"x","headers":{"h":1}}"#, "header \"h\" must be a string"),
            (#"{"resource":"r","value":"x","headers":{"time":"1"}}"#, "give it as the time field"),
            (#"{"resource":"r","value":"x","headers":[]}"#, "headers must be an object"),
            (#"{"resource":"r","value":"x","time":7.0}"#, "time must be an integer"),
            (#"{"resource":"r","value":"x","time":1e3}"#, "time must be an integer"),
            (#"{"resource":"r","value":"x","partition":-1}"#, "partition must be an integer"),
            (#"{"resource":"r","value":"x","valu":"typo"}"#, "\"valu\" is not a field"),
            (#"{"resource":"r","value":"x","value":"y"}"#, "duplicate key"),
        ]
        for (line, expected) in cases {
            guard let reason = reason(line) else {
                XCTFail("\(line) was accepted")
                continue
            }
            XCTAssertTrue(reason.contains(expected), "\(line): \(reason)")
        }
        XCTAssertTrue(reason(#"{"resource":"r","to":"up","epoch":1,"seq":1,"time":0,"partition":0}"#, kind: .flip)?.contains("partition is not a field") == true)
        XCTAssertTrue(reason(#"{"resource":"r","to":"up","epoch":1,"seq":1.0,"time":0}"#, kind: .flip)?.contains("seq must be an integer") == true)
        XCTAssertTrue(reason("{\"resource\":\"r\",\"value\":\"\u{FFFD}\"}".replacingOccurrences(of: "\u{FFFD}", with: "\\ud800")) != nil, "a lone surrogate is not text")
    }

    func testInvalidUTF8InTheLineIsInvalidNotRepaired() {
        var bytes = Array(#"{"resource":"r","value":"x"#.utf8)
        bytes += [0xC3, 0x28]
        bytes += Array(#""}"#.utf8)
        XCTAssertThrowsError(try RecordLines.record(from: bytes, kind: .raw))
    }

    func testAFlipRecordIsTheEventEncoded() throws {
        let parsed = try record(#"{"resource":"db/1","from":"up","to":"down","epoch":2,"seq":9,"time":1700000000000}"#, kind: .flip)
        let event = try FlipEvent.decode(key: parsed.key, value: parsed.value)
        XCTAssertEqual(event, FlipEvent(resource: "db/1", from: "up", to: "down", polarity: nil, actor: "", reason: "", epoch: 2, seq: 9, time: 1_700_000_000_000))
        XCTAssertNil(parsed.partition)
    }

    func testAcknowledgementLines() {
        XCTAssertEqual(RecordLines.acknowledgement(line: 1, outcome: .committed(partition: 2, offset: 40)), #"{"line":1,"outcome":"committed","partition":2,"offset":40}"#)
        XCTAssertEqual(RecordLines.acknowledgement(line: 2, outcome: .duplicate(partition: 0, offset: 7)), #"{"line":2,"outcome":"duplicate","partition":0,"offset":7}"#)
        XCTAssertEqual(RecordLines.acknowledgement(line: 3, outcome: .sent(partition: 1)), #"{"line":3,"outcome":"sent","partition":1,"offset":null}"#)
        XCTAssertEqual(RecordLines.acknowledgement(line: 4, outcome: .outOfOrder("gap")), #"{"line":4,"outcome":"out_of_order","partition":null,"offset":null,"error":"gap"}"#)
        XCTAssertEqual(RecordLines.acknowledgement(line: 5, outcome: .invalid("a \"quoted\" reason")), #"{"line":5,"outcome":"invalid","partition":null,"offset":null,"error":"a \"quoted\" reason"}"#)
    }

    func testConsumeLinesPrintWhatProduceRead() throws {
        let produced = try record(#"{"resource":"r","value":"v","headers":{"h":"x"},"time":12}"#)
        let consumed = ConsumedRecord(partition: 1, offset: 5, appendTime: 99, key: produced.key, value: produced.value, headers: produced.headers)
        XCTAssertEqual(RecordLines.line(for: consumed, topic: "t", kind: .raw, polarityMap: nil),
                       #"{"resource":"r","value":"v","headers":{"h":"x"},"time":12,"topic":"t","partition":1,"offset":5,"append_time":99}"#)
        let binary = ConsumedRecord(partition: 0, offset: 0, appendTime: 1, key: Array("r".utf8), value: [0xFF, 0x00], headers: [])
        XCTAssertEqual(RecordLines.line(for: binary, topic: "t", kind: .raw, polarityMap: nil),
                       #"{"resource":"r","value_base64":"/wA=","topic":"t","partition":0,"offset":0,"append_time":1}"#)
    }

    func testFlipConsumeLinesResolveThePolarity() throws {
        let withOwn = try record(#"{"resource":"a","to":"down","polarity":1,"epoch":1,"seq":1,"time":5}"#, kind: .flip)
        let withoutOwn = try record(#"{"resource":"a","to":"down","epoch":1,"seq":2,"time":6}"#, kind: .flip)
        let unmapped = try record(#"{"resource":"a","to":"sideways","epoch":1,"seq":3,"time":7}"#, kind: .flip)
        let map: [String: Int8] = ["down": -1]
        func line(_ record: ProducerRecord) -> String {
            RecordLines.line(for: ConsumedRecord(partition: 0, offset: 0, appendTime: 0, key: record.key, value: record.value, headers: []), topic: "f", kind: .flip, polarityMap: map)
        }
        XCTAssertEqual(line(withOwn), #"{"resource":"a","from":"","to":"down","polarity":1,"actor":"","reason":"","epoch":1,"seq":1,"time":5,"topic":"f","partition":0,"offset":0,"append_time":0}"#)
        XCTAssertTrue(line(withoutOwn).contains(#""polarity":-1,"#))
        XCTAssertTrue(line(unmapped).contains(#""polarity":0,"#))
    }
}
