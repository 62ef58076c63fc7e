import LogFormat
import PauliZ
import XCTest

/// Pauli-Z errors say what kind they are, so the server answers the right wire code (a
/// temporary-file failure is an I/O error, not a reached limit) and the command line the
/// right exit status.
final class ErrorCodeTests: XCTestCase {
    func testABadQueryIsAnInvalidArgument() {
        let bad = [
            PauliZQuery(windowMilliseconds: 0),
            PauliZQuery(windowMilliseconds: 60_000, hopMilliseconds: 7_000),
            PauliZQuery(windowMilliseconds: 60_000, from: 10, to: 10),
            PauliZQuery(windowMilliseconds: 60_000, polarityMap: ["up": 2]),
        ]
        for query in bad {
            XCTAssertThrowsError(try query.validate(), "\(query)") { error in
                XCTAssertEqual((error as? PauliZError)?.code, .invalidArgument, "\(error)")
            }
        }
        XCTAssertThrowsError(try StormParameters.check(intervalMilliseconds: 0, enter: 5, exit: 1)) { error in
            XCTAssertEqual((error as? PauliZError)?.code, .invalidArgument, "\(error)")
        }
    }

    func testATemporaryFileThatCannotBeCreatedIsAnIOError() throws {
        let missing = NSTemporaryDirectory() + "lodestone-no-such-directory-\(UInt64.random(in: 0...UInt64.max))"
        let engine = try PauliZEngine(query: PauliZQuery(windowMilliseconds: 1_000), rowsInMemoryMax: 2, temporaryDirectory: missing)
        var thrown: PauliZError?
        do {
            // More rows than fit in memory: the sorter spills, into a directory that is not there.
            for index in 0..<64 { try ingest(flip("r\(index)", Int64(index) * 1_000, to: "up", seq: 1), into: engine) }
            _ = try engine.finish()
        } catch let error as PauliZError {
            thrown = error
        }
        let error = try XCTUnwrap(thrown, "the spill into a missing directory must fail")
        XCTAssertEqual(error.code, .io)
        XCTAssertTrue(error.message.contains(missing), error.message)
        XCTAssertEqual(error.description, "io: " + error.message)
    }
}
