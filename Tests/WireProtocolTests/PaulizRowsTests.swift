import PauliZ
import WireProtocol
import XCTest

/// A Pauli-Z row crosses the wire through one adapter, in the order Docs/protocol.md gives.
final class PaulizRowsTests: XCTestCase {
    func testARowKeepsEveryFigureInTheDocumentedOrder() {
        var row = PauliZRow(windowStart: -60_000, key: 7)
        (row.events, row.flips, row.up, row.down, row.covered, row.chainBreaks) = (101, 102, 103, 104, 105, 106)
        (row.seqGaps, row.epochChanges, row.clockRegressions, row.knownMilliseconds, row.integral, row.stormMilliseconds) = (107, 108, 109, 110, -111, 112)
        let wire = PaulizReply.Row(resource: "r/1", row)
        XCTAssertEqual(wire.resource, "r/1")
        XCTAssertEqual(wire.windowStart, -60_000)
        // events, flips, up, down, covered, chain breaks, seq gaps, epoch changes, clock
        // regressions, known ms, integral, storm ms.
        XCTAssertEqual(wire.figures, [101, 102, 103, 104, 105, 106, 107, 108, 109, 110, -111, 112])
        XCTAssertEqual(wire.figures.count, PaulizReply.Row.figureCount)
        var back = row
        back.key = 3
        XCTAssertEqual(wire.pauliZRow(key: 3), back)
    }
}
