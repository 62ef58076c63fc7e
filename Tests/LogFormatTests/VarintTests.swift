import XCTest
@testable import LogFormat

final class VarintTests: XCTestCase {
    /// Kafka's zigzag varints: 0 → 00, -1 → 01, 1 → 02, 63 → 7E, -64 → 7F, 64 → 80 01.
    func testZigzagEncodingMatchesKafka() {
        let cases: [(Int64, [UInt8])] = [
            (0, [0x00]), (-1, [0x01]), (1, [0x02]), (-2, [0x03]), (63, [0x7E]), (-64, [0x7F]),
            (64, [0x80, 0x01]), (300, [0xD8, 0x04]), (Int64(Int32.max), [0xFE, 0xFF, 0xFF, 0xFF, 0x0F]),
            (Int64(Int32.min), [0xFF, 0xFF, 0xFF, 0xFF, 0x0F]),
        ]
        for (value, expected) in cases {
            var bytes: [UInt8] = []
            ByteWriter.writeVarint(value, to: &bytes)
            XCTAssertEqual(bytes, expected, "\(value)")
            XCTAssertEqual(ByteWriter.varintSize(value), expected.count)
        }
    }

    func testVarintAndVarlongRoundTrip() throws {
        var generator = SplitMix64(seed: 3)
        var values: [Int64] = [0, 1, -1, Int64.max, Int64.min, Int64(Int32.max), Int64(Int32.min)]
        for _ in 0..<2000 { values.append(Int64(bitPattern: generator.next()) >> Int64.random(in: 0...63, using: &generator)) }
        for value in values {
            var bytes: [UInt8] = []
            ByteWriter.writeVarint(value, to: &bytes)
            let decoded = try bytes.withUnsafeBytes { raw in
                var cursor = ByteCursor(raw, context: "test")
                let result = try cursor.readVarlong("v")
                XCTAssertEqual(cursor.remaining, 0)
                return result
            }
            XCTAssertEqual(decoded, value)
            if let small = Int32(exactly: value) {
                let decoded32 = try bytes.withUnsafeBytes { raw in
                    var cursor = ByteCursor(raw, context: "test")
                    return try cursor.readVarint("v")
                }
                XCTAssertEqual(decoded32, small)
            }
        }
    }

    func testOverlongVarintsAreRefused() throws {
        let tooLong32: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF, 0x1F]
        let tooLong64: [UInt8] = Array(repeating: 0xFF, count: 10) + [0x01]
        let unterminated: [UInt8] = [0x80, 0x80]
        try tooLong32.withUnsafeBytes { raw in
            var cursor = ByteCursor(raw, context: "test")
            XCTAssertThrowsError(try cursor.readVarint("v")) { XCTAssertEqual(($0 as? FormatError)?.code, .badVarint) }
        }
        try tooLong64.withUnsafeBytes { raw in
            var cursor = ByteCursor(raw, context: "test")
            XCTAssertThrowsError(try cursor.readVarlong("v")) { XCTAssertEqual(($0 as? FormatError)?.code, .badVarint) }
        }
        try unterminated.withUnsafeBytes { raw in
            var cursor = ByteCursor(raw, context: "test")
            XCTAssertThrowsError(try cursor.readVarlong("v")) { XCTAssertEqual(($0 as? FormatError)?.code, .truncated) }
        }
    }
}
