import LogFormat
import PauliZ
import XCTest

/// Properties over seeded random traffic. LODESTONE_PAULIZ_SEEDS sets how many seeds
/// (default 300).
final class PropertyTests: XCTestCase {
    var seeds: Int { Int(getenvString("LODESTONE_PAULIZ_SEEDS") ?? "") ?? 300 }

    /// The engine and the naive model of the spec agree on every row and episode.
    func testEngineMatchesTheNaiveModel() throws {
        for seed in 0..<UInt64(seeds) {
            var traffic = SmallTraffic(seed: seed)
            let events = traffic.events(count: 1 + traffic.below(60))
            let query = traffic.query()
            let engine = try runEngine(events, query)
            let model = ReferenceModel.run(events, query)
            XCTAssertEqual(engine.rows, model.rows, "seed \(seed), query \(query)")
            XCTAssertEqual(engine.storms, model.storms, "seed \(seed), query \(query)")
            if engine.rows != model.rows || engine.storms != model.storms { return }
        }
    }

    /// Resources never share an order: interleaving them differently (as another
    /// partition count would) changes nothing; nor does spilling sorted runs.
    func testInterleavingAndSpillingChangeNothing() throws {
        for seed in 0..<UInt64(seeds / 3) {
            var traffic = SmallTraffic(seed: seed)
            let events = traffic.events(count: 40)
            let query = traffic.query()
            let reference = try runEngine(events, query)
            // Resource by resource, each in its own order.
            let grouped = Dictionary(grouping: events, by: \.resource).sorted { $0.key > $1.key }.flatMap(\.value)
            XCTAssertEqual(try runEngine(grouped, query).rows, reference.rows, "seed \(seed)")
            XCTAssertEqual(try runEngine(grouped, query).storms, reference.storms, "seed \(seed)")
            XCTAssertEqual(try runEngine(events, query, rowsInMemoryMax: 3).rows, reference.rows, "seed \(seed)")
        }
    }

    /// Splitting a query's range into parts and putting the parts' rows together gives
    /// the rows of the whole range (state always comes from the whole history).
    func testSplitRangesMergeToTheWhole() throws {
        for seed in 0..<UInt64(seeds / 3) {
            var traffic = SmallTraffic(seed: seed)
            let events = traffic.events(count: 50)
            var query = traffic.query()
            query.from = nil
            query.to = nil
            let whole = try runEngine(events, query).rows
            let middle = Int64(traffic.below(40)) - 20
            var first = query, second = query
            first.to = middle
            second.from = middle
            XCTAssertEqual(try runEngine(events, first).rows + runEngine(events, second).rows, whole, "seed \(seed)")
        }
    }

    /// Where the spec says so: a hopping window's counts are the sums of the counts of
    /// the tumbling windows of size H inside it (known_ms, z_mean and storm_ms are not,
    /// since hop-sized windows without events have no rows).
    func testHoppingCountsAreSumsOfTumblingParts() throws {
        for seed in 0..<UInt64(seeds / 3) {
            var traffic = SmallTraffic(seed: seed)
            let events = traffic.events(count: 50)
            let hopping = PauliZQuery(windowMilliseconds: 6, hopMilliseconds: 2)
            let tumbling = PauliZQuery(windowMilliseconds: 2)
            let parts = try rowsByKey(events, tumbling)
            for (key, row) in try rowsByKey(events, hopping) {
                var sum = PauliZRow(windowStart: key.start, key: 0)
                for offset in stride(from: Int64(0), to: 6, by: 2) {
                    if let part = parts[Key(resource: key.resource, start: key.start + offset)] { sum.add(part) }
                }
                XCTAssertEqual([row.events, row.flips, row.up, row.down, row.covered, row.chainBreaks, row.seqGaps, row.epochChanges, row.clockRegressions],
                               [sum.events, sum.flips, sum.up, sum.down, sum.covered, sum.chainBreaks, sum.seqGaps, sum.epochChanges, sum.clockRegressions],
                               "seed \(seed), \(key)")
            }
        }
    }

    struct Key: Hashable {
        var resource: String
        var start: Int64
    }

    func rowsByKey(_ events: [FlipEvent], _ query: PauliZQuery) throws -> [Key: PauliZRow] {
        let engine = try PauliZEngine(query: query)
        for event in events { try ingest(event, into: engine) }
        let result = try engine.finish()
        var rows: [Key: PauliZRow] = [:]
        try result.forEachRow { rows[Key(resource: result.name(of: $0.key), start: $0.windowStart)] = $0 }
        return rows
    }
}

func getenvString(_ name: String) -> String? {
    guard let value = getenv(name) else { return nil }
    return String(cString: value)
}
