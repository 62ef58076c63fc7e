import LogFormat
@testable import LogStorage
import XCTest

final class SegmentSummaryTests: XCTestCase {
    /// Above 64 KiB of names, a Bloom filter over resources and their "/" prefixes.
    func testBloomFilterSummaries() throws {
        var builder = SegmentSummaryBuilder()
        let names = (0..<5_000).map { "prod/region-\($0 % 7)/service-\($0)/leader" }
        for name in names {
            var effects = AppendEffects()
            effects.resources = [(name, ResourceMark(epoch: 0, seq: 0))]
            effects.eventCount = 1
            effects.eventTimeMin = 5
            effects.eventTimeMax = 5
            builder.add(effects)
        }
        let summary = try XCTUnwrap(builder.summary())
        XCTAssertNil(summary.resources)
        let decoded = try SegmentSummary.decode(summary.encoded())
        XCTAssertEqual(decoded, summary)
        for name in names { XCTAssertTrue(decoded.mayContain(resource: name), name) }
        XCTAssertTrue(decoded.mayContain(prefix: "prod/region-3"))
        XCTAssertTrue(decoded.mayContain(prefix: "prod/region-3/service-3"))
        let absent = (0..<2_000).filter { decoded.mayContain(resource: "staging/other-\($0)") }.count
        XCTAssertLessThan(absent, 60, "false positives stay near 1%")
    }

    func testExactSummariesRoundTripAndAnswerPrefixes() throws {
        var builder = SegmentSummaryBuilder()
        for (name, time) in [("b/x", 9), ("a", -4), ("a/b/c", 7)] {
            var effects = AppendEffects()
            effects.resources = [(name, ResourceMark(epoch: 0, seq: 0))]
            effects.eventCount = 2
            effects.eventTimeMin = Int64(time)
            effects.eventTimeMax = Int64(time)
            builder.add(effects)
        }
        let summary = try XCTUnwrap(builder.summary())
        XCTAssertEqual(summary.resources, ["a", "a/b/c", "b/x"])
        XCTAssertEqual([summary.eventCount, summary.eventTimeMin, summary.eventTimeMax], [6, -4, 9])
        let decoded = try SegmentSummary.decode(summary.encoded())
        XCTAssertEqual(decoded, summary)
        XCTAssertTrue(decoded.mayContain(prefix: "a/b"))
        XCTAssertTrue(decoded.mayContain(prefix: "b"))
        XCTAssertFalse(decoded.mayContain(prefix: "a/b/c/d"))
        XCTAssertFalse(decoded.mayContain(resource: "b"))
        var damaged = summary.encoded()
        damaged[7] ^= 0x10
        XCTAssertThrowsError(try SegmentSummary.decode(damaged))
        XCTAssertNil(SegmentSummaryBuilder().summary(), "no flip events, no summary")
    }
}
