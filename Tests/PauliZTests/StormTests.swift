import LogFormat
import PauliZ
import XCTest

/// Section 6, rule by rule, hand-computed. S = 60,000, E = 3, X = 1 unless said.
final class StormTests: XCTestCase {
    let storm = StormParameters(intervalMilliseconds: 60_000, enter: 3, exit: 1)

    /// Three flips at 0, 1,000, 2,000 (the first names its from, so it is a flip).
    func threeFlips() -> [FlipEvent] {
        [
            flip("r", 0, from: "z", to: "a", seq: 1),
            flip("r", 1_000, to: "b", seq: 2),
            flip("r", 2_000, to: "a", seq: 3),
        ]
    }

    /// count(2,000) = 3 >= E: a storm starts at 2,000. count falls at 60,000 (to 2 > X) and
    /// at 61,000 (to 1 <= X): it ends at 61,000. Flips in (2,000 - S, 61,000): 3; peak 3.
    func testStartAndEndAtADropInstant() throws {
        let events = threeFlips() + [flip("s", 200_000, to: "x", seq: 1)]
        let (rows, storms) = try runEngine(events, PauliZQuery(windowMilliseconds: 60_000, storm: storm))
        XCTAssertEqual(storms, [#"{"resource":"r","start":2000,"end":61000,"flips":3,"peak":3}"#])
        // storm_ms in [0, 60,000): [2,000, 60,000) = 58,000 (the [60,000, 61,000) part lies in a
        // window without events of r: no row).
        XCTAssertTrue(rows[0].hasSuffix(#""storm_ms":58000}"#), rows[0])
    }

    /// An episode whose end would fall after the horizon is open: end null, storm_ms to Hz.
    func testOpenAtTheHorizon() throws {
        let events = threeFlips() + [flip("s", 30_000, to: "x", seq: 1)]
        let (rows, storms) = try runEngine(events, PauliZQuery(windowMilliseconds: 60_000, storm: storm))
        XCTAssertEqual(storms, [#"{"resource":"r","start":2000,"end":null,"flips":3,"peak":3}"#])
        XCTAssertTrue(rows[0].hasSuffix(#""known_ms":30000,"z_mean":0.0,"storm_ms":28000}"#), rows[0])
    }

    /// "An end at exactly Hz closes it."
    func testEndAtExactlyTheHorizonCloses() throws {
        let events = threeFlips() + [flip("s", 61_000, to: "x", seq: 1)]
        let (_, storms) = try runEngine(events, PauliZQuery(windowMilliseconds: 60_000, storm: storm))
        XCTAssertEqual(storms, [#"{"resource":"r","start":2000,"end":61000,"flips":3,"peak":3}"#])
    }

    /// Flips at one instant count as arriving together; a readout does not count; peak is
    /// the largest count in the episode; flips at the end instant are not the episode's.
    func testSameInstantPeakAndEndInstantFlips() throws {
        let events = [
            flip("r", 0, from: "z", to: "a", seq: 1),
            flip("r", 10, to: "b", seq: 2),
            flip("r", 10, to: "a", seq: 3),  // count(10) = 3: starts at 10
            flip("r", 10, to: "a", seq: 4),  // readout: no change
            flip("r", 20, to: "b", seq: 5),  // count 4: peak 4
            // Drops: 60,000 (the flip at 0 leaves: 3) and 60,010 (the two at 10 leave: 1), but a
            // flip arrives at 60,010: count(60,010) = 2 > X, the storm goes on and that flip
            // is the episode's. At 60,020 the flip at 20 leaves: count 1 <= X, the end.
            flip("r", 60_010, to: "a", seq: 6),
            flip("s", 100_000, to: "x", seq: 1),
        ]
        let (_, storms) = try runEngine(events, PauliZQuery(windowMilliseconds: 60_000, storm: storm))
        XCTAssertEqual(storms, [#"{"resource":"r","start":10,"end":60020,"flips":5,"peak":4}"#])
    }

    /// A flip at the very instant the count falls: it counts there, and when the count
    /// with it is still <= X the storm ends at that instant without it.
    func testFlipAtTheEndInstantIsNotTheEpisodes() throws {
        let parameters = StormParameters(intervalMilliseconds: 60_000, enter: 3, exit: 2)
        let events = [
            flip("r", 0, from: "z", to: "a", seq: 1),
            flip("r", 0, to: "b", seq: 2),
            flip("r", 1, to: "a", seq: 3),  // count(1) = 3: starts at 1
            // At 60,000 both flips at 0 leave (count 1) and this flip arrives: 2 <= X: the end.
            flip("r", 60_000, to: "b", seq: 4),
            flip("s", 100_000, to: "x", seq: 1),
        ]
        let (_, storms) = try runEngine(events, PauliZQuery(windowMilliseconds: 60_000, storm: parameters))
        XCTAssertEqual(storms, [#"{"resource":"r","start":1,"end":60000,"flips":3,"peak":3}"#])
    }

    /// Two episodes may share run-up flips; a storm query selects closed episodes with
    /// start < to and end > from, open ones with start < to.
    func testSelectionByRange() throws {
        let events = threeFlips() + [
            flip("r", 200_000, to: "b", seq: 4), flip("r", 200_001, to: "a", seq: 5), flip("r", 200_002, to: "b", seq: 6),
        ]
        let all = try runEngine(events, PauliZQuery(windowMilliseconds: 60_000, storm: storm)).storms
        XCTAssertEqual(all, [
            #"{"resource":"r","start":2000,"end":61000,"flips":3,"peak":3}"#,
            #"{"resource":"r","start":200002,"end":null,"flips":3,"peak":3}"#,
        ])
        let late = try runEngine(events, PauliZQuery(windowMilliseconds: 60_000, from: 61_000, storm: storm)).storms
        XCTAssertEqual(late, [#"{"resource":"r","start":200002,"end":null,"flips":3,"peak":3}"#])
        let early = try runEngine(events, PauliZQuery(windowMilliseconds: 60_000, from: 60_000, to: 200_002, storm: storm)).storms
        XCTAssertEqual(early, [#"{"resource":"r","start":2000,"end":61000,"flips":3,"peak":3}"#])
    }

    /// Storms use effective times: a regressed event counts at its clamped time.
    func testClampedTimesCount() throws {
        let events = [
            flip("r", 5_000, from: "z", to: "a", seq: 1),
            flip("r", 1_000, to: "b", seq: 2),  // effective 5,000
            flip("r", 2_000, to: "a", seq: 3),  // effective 5,000: count(5,000) = 3
            flip("s", 10_000, to: "x", seq: 1),
        ]
        let (_, storms) = try runEngine(events, PauliZQuery(windowMilliseconds: 60_000, storm: storm))
        XCTAssertEqual(storms, [#"{"resource":"r","start":5000,"end":null,"flips":3,"peak":3}"#])
    }
}
