import LogFormat
import PauliZ
import XCTest

/// Hand-computed cases, each worked out from the text of Docs/spec/pauli-z.md.
final class FiguresTests: XCTestCase {
    /// Section 1 (before-state), 3 (clamping) and 5 (every count figure, known_ms, z_mean).
    func testEveryFigureOfOneWindow() throws {
        let events = [
            // First event, empty from: before-state is its own to, a readout.
            flip("r", 1_000, to: "a", polarity: 1, actor: "x", reason: "y", epoch: 1, seq: 1),
            // Before-state a (previous to): a flip down, actor and reason given.
            flip("r", 11_000, to: "b", polarity: -1, actor: "x", reason: "y", epoch: 1, seq: 2),
            // from c: a flip (a != c); a chain break (c != b); a seq gap (5 > 2 + 1); no cause.
            flip("r", 21_000, from: "c", to: "a", polarity: 1, epoch: 1, seq: 5),
            // time 15,000 < 21,000: a clock regression, effective time 21,000; epoch change;
            // before-state a, so a readout.
            flip("r", 15_000, to: "a", polarity: 1, epoch: 2, seq: 1),
            // Another resource sets the horizon at 100,000.
            flip("s", 100_000, to: "on", epoch: 0, seq: 0),
        ]
        let (rows, storms) = try runEngine(events, PauliZQuery(windowMilliseconds: 60_000))
        // known: [1,000, 60,000) = 59,000; integral: +10,000 - 10,000 + 39,000 = 39,000.
        XCTAssertEqual(rows, [
            row("r", 0, 60_000, events: 4, flips: 2, up: 1, down: 1, rate: "2.0", coverage: "0.5", chainBreaks: 1, seqGaps: 1,
                epochChanges: 1, clockRegressions: 1, known: 59_000, z: "\(39_000.0 / 59_000.0)"),
            // The window reaching past the horizon: known part [100,000, 100,000) is empty.
            row("s", 60_000, 120_000, events: 1, flips: 0, up: 0, down: 0, rate: "0.0", coverage: "null", known: 0, z: "null"),
        ])
        XCTAssertEqual(storms, [])
        XCTAssertEqual(39_000.0 / 59_000.0, 0.6610169491525424)
    }

    /// The state before a window comes from the resource's history; a window without
    /// events emits no row; the topic's polarity map applies when an event has none, and
    /// an event's own polarity wins over the map.
    func testStateCarriesAcrossWindowsAndPolarityMap() throws {
        let query = PauliZQuery(windowMilliseconds: 10_000, polarityMap: ["up": 1, "down": -1])
        let events = [
            flip("r", 5_000, to: "up", seq: 1),
            // Nothing in [10,000, 20,000): no row there.
            flip("r", 25_000, to: "down", seq: 2),
            // The map says -1 for "down", the event says 0: 0 wins. A readout (down to down).
            flip("r", 27_000, to: "down", polarity: 0, seq: 3),
        ]
        let (rows, _) = try runEngine(events, query)
        XCTAssertEqual(rows, [
            row("r", 0, 10_000, events: 1, flips: 0, up: 0, down: 0, rate: "0.0", coverage: "null", known: 5_000, z: "1.0"),
            // [20,000, 25,000) in state up (+5,000), [25,000, 27,000) down (-2,000), then 0 to the
            // horizon 27,000; known [20,000, 27,000) = 7,000.
            row("r", 20_000, 30_000, events: 2, flips: 1, up: 0, down: 1, rate: "6.0", coverage: "0.0", known: 7_000, z: "\(3_000.0 / 7_000.0)"),
        ])
    }

    /// Section 4: an event belongs to every hopping window that contains its effective time.
    func testHoppingWindows() throws {
        let query = PauliZQuery(windowMilliseconds: 60_000, hopMilliseconds: 30_000)
        let events = [
            flip("r", 10_000, to: "a", polarity: 1, seq: 1),
            flip("r", 40_000, to: "b", polarity: -1, seq: 2),
            flip("s", 70_000, to: "x", seq: 1),
        ]
        let (rows, _) = try runEngine(events, query)
        XCTAssertEqual(rows, [
            row("r", -30_000, 30_000, events: 1, flips: 0, up: 0, down: 0, rate: "0.0", coverage: "null", known: 20_000, z: "1.0"),
            // a from 10,000 to 40,000 (+30,000), b to 60,000 (-20,000); known 50,000.
            row("r", 0, 60_000, events: 2, flips: 1, up: 0, down: 1, rate: "1.0", coverage: "0.0", known: 50_000, z: "0.2"),
            // a from 30,000 to 40,000 (+10,000), b to the horizon 70,000 (-30,000); known 40,000.
            row("r", 30_000, 90_000, events: 1, flips: 1, up: 0, down: 1, rate: "1.0", coverage: "0.0", known: 40_000, z: "-0.5"),
            // s's one event at 70,000 lies in two windows; both reach past the horizon.
            row("s", 30_000, 90_000, events: 1, flips: 0, up: 0, down: 0, rate: "0.0", coverage: "null", known: 0, z: "null"),
            row("s", 60_000, 120_000, events: 1, flips: 0, up: 0, down: 0, rate: "0.0", coverage: "null", known: 0, z: "null"),
        ])
    }

    /// Negative times: windows align to the epoch, floor not truncation.
    func testNegativeTimesAlignDown() throws {
        let (rows, _) = try runEngine([flip("r", -1, to: "a", polarity: -1, seq: 1), flip("r", 0, to: "a", polarity: -1, seq: 2)],
                                      PauliZQuery(windowMilliseconds: 1_000))
        XCTAssertEqual(rows, [
            row("r", -1_000, 0, events: 1, flips: 0, up: 0, down: 0, rate: "0.0", coverage: "null", known: 1, z: "-1.0"),
            row("r", 0, 1_000, events: 1, flips: 0, up: 0, down: 0, rate: "0.0", coverage: "null", known: 0, z: "null"),
        ])
    }

    /// Section 4: from/to select windows by start; figures still use the whole history.
    func testQueryRangeSelectsWindowsNotHistory() throws {
        let events = [
            flip("r", 5_000, to: "a", polarity: 1, seq: 1),
            flip("r", 15_000, to: "b", polarity: -1, seq: 2),
            flip("r", 16_000, from: "a", to: "b", polarity: -1, seq: 3),
        ]
        let (rows, _) = try runEngine(events, PauliZQuery(windowMilliseconds: 10_000, from: 10_000, to: 20_000))
        // The second event's before-state (a) comes from before the range.
        XCTAssertEqual(rows, [
            // e3's before-state is its own from (a): a flip to b, and a chain break (the
            // previous to is b). Known [10,000, 16,000); +5,000 in a, -1,000 in b.
            row("r", 10_000, 20_000, events: 2, flips: 2, up: 0, down: 2, rate: "12.0", coverage: "0.0", chainBreaks: 1,
                known: 6_000, z: "\(4_000.0 / 6_000.0)"),
        ])
    }

    /// Section 7: groups by prefix depth sum their members' figures; z_mean from the summed
    /// integrals; rows are keyed "group".
    func testRollups() throws {
        let events = [
            flip("prod/eu/a", 0, to: "on", polarity: 1, actor: "x", reason: "y", seq: 1),
            flip("prod/eu/a", 30_000, to: "off", polarity: -1, actor: "x", reason: "y", seq: 2),
            flip("prod/us/b", 0, from: "off", to: "on", polarity: 1, seq: 1),
            flip("prod", 50_000, to: "on", polarity: 1, seq: 1),
            flip("stage/x", 60_000, to: "on", polarity: 1, seq: 1),
        ]
        let (rows, _) = try runEngine(events, PauliZQuery(windowMilliseconds: 60_000), groupDepth: 1)
        // prod: a (2 events, 1 flip down, covered; +30,000 - 30,000), b (1 flip up, uncovered;
        // +60,000), prod (readout; +10,000): known 60,000 + 60,000 + 10,000 = 130,000, which
        // exceeds W; integral 70,000.
        XCTAssertEqual(rows, [
            row("prod", 0, 60_000, events: 4, flips: 2, up: 1, down: 1, rate: "2.0", coverage: "0.5", known: 130_000,
                z: "\(70_000.0 / 130_000.0)", keyName: "group"),
            row("stage", 60_000, 120_000, events: 1, flips: 0, up: 0, down: 0, rate: "0.0", coverage: "null", known: 0, z: "null", keyName: "group"),
        ])
        XCTAssertEqual(PauliZRollup.group(of: "prod/eu/a", depth: 2), "prod/eu")
        XCTAssertEqual(PauliZRollup.group(of: "prod", depth: 2), "prod")
        XCTAssertEqual(PauliZRollup.group(of: "a//b", depth: 2), "a/")
    }

    /// Section 4: rows ordered by window start, then resource bytewise (not by locale or
    /// by first appearance).
    func testRowOrderIsBytewise() throws {
        let events = ["b", "B", "a/b", "a-b", "é", "a"].enumerated().map { flip($0.element, 10, to: "x", seq: Int64($0.offset)) }
        let (rows, _) = try runEngine(events, PauliZQuery(windowMilliseconds: 1_000))
        let keys = rows.map { String($0.split(separator: "\"")[3]) }
        XCTAssertEqual(keys, ["B", "a", "a-b", "a/b", "b", "é"])
    }

    /// Ratios are rounded once from exact integers, also past 53 bits.
    func testExactRatio() {
        XCTAssertEqual(exactRatio(1, 3), 1.0 / 3.0)
        XCTAssertEqual(exactRatio(-2, 3), -2.0 / 3.0)
        XCTAssertEqual(exactRatio(0, 7), 0)
        // (2^60 + 1) / 2^60: the nearest double is 1.0 (the +1 is far below 53 bits).
        XCTAssertEqual(exactRatio((1 << 60) + 1, 1 << 60), 1.0)
        // (2^54 + 3) / 2: exactly 2^53 + 1.5, nearest double 2^53 + 2.
        XCTAssertEqual(exactRatio((1 << 54) + 3, 2), 9_007_199_254_740_994.0)
        // Doubles would round 2^53 + 1 to 2^53 first and give 0.9999999999999998; the exact
        // ratio rounds to 0.9999999999999999 (Python's Fraction agrees).
        XCTAssertEqual(exactRatio((1 << 53) + 1, (1 << 53) + 2), 0.9999999999999999)
        XCTAssertNotEqual(Double((1 << 53) + 1) / Double((1 << 53) + 2), 0.9999999999999999)
        XCTAssertEqual(exactRatio(-(1 << 70) - 12_345, (1 << 62) + 7), -256.0)
        XCTAssertEqual(exactRatio(123_456_789_012_345_678_901, 98_765_432_109_876_543), 1249.999988609375)
        XCTAssertEqual(exactRatio(Int128(Int64.max) * 3, Int128(Int64.max)), 3.0)
    }
}
