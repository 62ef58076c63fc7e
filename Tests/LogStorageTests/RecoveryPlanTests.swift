import LogFormat
@testable import LogStorage
import XCTest

/// The recovery plan on its own: facts in, decisions out, no files. Each row of the
/// decision table (RecoveryPlan.swift, Docs/durability.md) is one assertion here; RecoveryTests
/// holds the same rows on a simulated disk, with `lodestone check` predicting each open.
final class RecoveryPlanTests: XCTestCase {
    let open = PartitionStateFile(clean: false, groupWriteBytesMax: 4096)
    let clean = PartitionStateFile(clean: true, groupWriteBytesMax: 4096, lastSegmentBaseOffset: 10, endPosition: 500, nextOffset: 20)

    func testRolesFollowThePlaceAndTheStateFile() {
        XCTAssertEqual(RecoveryPlan.role(index: 0, count: 3, stateFile: clean), .sealed)
        XCTAssertEqual(RecoveryPlan.role(index: 2, count: 3, stateFile: clean), .lastAfterCleanShutdown)
        XCTAssertEqual(RecoveryPlan.role(index: 2, count: 3, stateFile: open), .lastAfterUncleanStop(window: 4096))
        // No state file: recovered as after an unclean stop, with the largest window allowed.
        XCTAssertEqual(RecoveryPlan.role(index: 0, count: 1, stateFile: nil), .lastAfterUncleanStop(window: Int64(Limits.groupWriteBytesMax)))
        XCTAssertFalse(RecoveryPlan.Role.sealed.mayHaveTornTail)
        XCTAssertFalse(RecoveryPlan.Role.lastAfterCleanShutdown.mayHaveTornTail)
        XCTAssertTrue(RecoveryPlan.Role.lastAfterUncleanStop(window: 1).mayHaveTornTail)
    }

    func testWhereReadingStarts() {
        let unclean = RecoveryPlan.Role.lastAfterUncleanStop(window: 4096)
        XCTAssertEqual(RecoveryPlan.start(role: .sealed, fileSize: 900, indexCoverage: 900), .useIndexes(verifyLastBatch: false))
        XCTAssertEqual(RecoveryPlan.start(role: .sealed, fileSize: 900, indexCoverage: 800), .read(from: 0, rebuildIndexes: true))
        XCTAssertEqual(RecoveryPlan.start(role: .sealed, fileSize: 900, indexCoverage: nil), .read(from: 0, rebuildIndexes: true))
        guard case .corruption(let empty) = RecoveryPlan.start(role: .sealed, fileSize: 0, indexCoverage: 0) else { return XCTFail("an empty sealed segment") }
        XCTAssertTrue(empty.contains("empty"), empty)
        XCTAssertEqual(RecoveryPlan.start(role: .lastAfterCleanShutdown, fileSize: 900, indexCoverage: 900), .useIndexes(verifyLastBatch: true))
        XCTAssertEqual(RecoveryPlan.start(role: .lastAfterCleanShutdown, fileSize: 900, indexCoverage: nil), .read(from: 0, rebuildIndexes: true))
        guard case .corruption(let longer) = RecoveryPlan.start(role: .lastAfterCleanShutdown, fileSize: 904, indexCoverage: 900) else {
            return XCTFail("bytes after a clean end")
        }
        XCTAssertTrue(longer.contains("900") && longer.contains("904"), longer)
        XCTAssertEqual(RecoveryPlan.start(role: unclean, fileSize: 900, indexCoverage: 600), .read(from: 600, rebuildIndexes: false))
        XCTAssertEqual(RecoveryPlan.start(role: unclean, fileSize: 900, indexCoverage: 950), .read(from: 0, rebuildIndexes: true))
        XCTAssertEqual(RecoveryPlan.start(role: unclean, fileSize: 900, indexCoverage: nil), .read(from: 0, rebuildIndexes: true))
        XCTAssertEqual(RecoveryPlan.start(role: unclean, fileSize: 0, indexCoverage: nil), .read(from: 0, rebuildIndexes: false), "an empty new segment has nothing to rebuild")
    }

    func testWhatFollowsTheLastValidBatch() {
        let unclean = RecoveryPlan.Role.lastAfterUncleanStop(window: 4096)
        XCTAssertEqual(RecoveryPlan.end(role: .sealed, invalidAt: nil, writtenEnd: nil), .intact)
        XCTAssertEqual(RecoveryPlan.end(role: unclean, invalidAt: nil, writtenEnd: nil), .intact)
        XCTAssertEqual(RecoveryPlan.end(role: unclean, invalidAt: 1000, writtenEnd: 1000), .preWrittenZeros(from: 1000))
        XCTAssertEqual(RecoveryPlan.end(role: unclean, invalidAt: 1000, writtenEnd: 5096), .tornTail(from: 1000, writtenEnd: 5096))
        guard case .corruption(let at, let why) = RecoveryPlan.end(role: unclean, invalidAt: 1000, writtenEnd: 5097) else {
            return XCTFail("written one byte past the window")
        }
        XCTAssertEqual(at, 1000)
        XCTAssertTrue(why.contains("5097") && why.contains("4096"), why)
        // Where nothing can be torn, invalid bytes are corruption, zeros or not.
        for role in [RecoveryPlan.Role.sealed, .lastAfterCleanShutdown] {
            guard case .corruption(let at, _) = RecoveryPlan.end(role: role, invalidAt: 1000, writtenEnd: nil) else { return XCTFail("\(role)") }
            XCTAssertEqual(at, 1000)
        }
    }

    func testContinuityAndTheCleanEnd() {
        XCTAssertNil(RecoveryPlan.continuity(previousNextOffset: nil, baseOffset: 7))
        XCTAssertNil(RecoveryPlan.continuity(previousNextOffset: 7, baseOffset: 7))
        XCTAssertEqual(RecoveryPlan.continuity(previousNextOffset: 7, baseOffset: 9), "segment starts at offset 9 but the previous segment ends at offset 7")
        XCTAssertNil(RecoveryPlan.cleanEnd(stateFile: clean, lastBaseOffset: 10, nextOffset: 20, size: 500))
        XCTAssertNil(RecoveryPlan.cleanEnd(stateFile: open, lastBaseOffset: 10, nextOffset: 99, size: 1), "only a clean record names an end")
        XCTAssertNil(RecoveryPlan.cleanEnd(stateFile: nil, lastBaseOffset: 10, nextOffset: 99, size: 1))
        let mismatch = RecoveryPlan.cleanEnd(stateFile: clean, lastBaseOffset: 10, nextOffset: 19, size: 450)
        XCTAssertTrue(mismatch?.contains("offset 20, position 500") ?? false, mismatch ?? "nil")
    }
}
