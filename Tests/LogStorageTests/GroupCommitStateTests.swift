@testable import LogStorage
import XCTest

/// The partition writer's queue and flags (`GroupCommit`) on their own: no files, no
/// threads, no sleeps.
final class GroupCommitStateTests: XCTestCase {
    struct Item: GroupCommitItem, Equatable {
        var id: Int
        var byteCount: Int
    }

    typealias Commit = GroupCommit<Item>

    func commit(bytesMax: Int = 1000, countMax: Int = 100, groupCountMax: Int = 50) -> Commit {
        Commit(queuedBytesMax: bytesMax, queuedCountMax: countMax, groupCountMax: groupCountMax)
    }

    /// Everything fits in the segment, the group limit is `budget`.
    func fits(_ budget: Int) -> (Int) -> (roll: Bool, budget: Int) { { _ in (false, budget) } }

    func group(_ step: Commit.Step) -> [Int]? {
        if case .group(let items, _, _) = step { return items.map(\.id) }
        return nil
    }

    func testOnlyTheFirstAppendSchedulesTheWriter() {
        var c = commit()
        XCTAssertTrue(c.enqueue(Item(id: 1, byteCount: 10)))
        XCTAssertFalse(c.enqueue(Item(id: 2, byteCount: 10)), "a turn is scheduled already")
        XCTAssertEqual(c.queuedBytes, 20)
        XCTAssertEqual(group(c.takeGroup(plan: fits(1000)).step), [1, 2])
        XCTAssertFalse(c.groupDone(), "nothing left: the turn ends")
        XCTAssertFalse(c.writerScheduled)
        XCTAssertTrue(c.enqueue(Item(id: 3, byteCount: 10)), "the next append schedules a new turn")
    }

    func testAppendsThatCameDuringAWriteMakeTheNextGroup() {
        var c = commit()
        _ = c.enqueue(Item(id: 1, byteCount: 10))
        XCTAssertEqual(group(c.takeGroup(plan: fits(1000)).step), [1])
        XCTAssertFalse(c.enqueue(Item(id: 2, byteCount: 10)), "the running writer takes it")
        XCTAssertFalse(c.enqueue(Item(id: 3, byteCount: 10)))
        XCTAssertTrue(c.groupDone(), "more is queued: the writer goes on")
        XCTAssertEqual(group(c.takeGroup(plan: fits(1000)).step), [2, 3], "taken together, in order")
    }

    func testAGroupStopsAtItsByteBudgetAndCountButAlwaysTakesOne() {
        var c = commit(groupCountMax: 3)
        for id in 1...6 { _ = c.enqueue(Item(id: id, byteCount: 40)) }
        XCTAssertEqual(group(c.takeGroup(plan: fits(100)).step), [1, 2], "a third would pass 100 bytes")
        XCTAssertEqual(group(c.takeGroup(plan: fits(1000)).step), [3, 4, 5], "at most groupCountMax appends")
        XCTAssertEqual(group(c.takeGroup(plan: fits(10)).step), [6], "one larger than the budget goes alone")
        XCTAssertEqual(c.queuedBytes, 0)
    }

    func testThePlanSeesTheFrontAppendAndTheRollIsPassedOn() {
        var c = commit()
        _ = c.enqueue(Item(id: 1, byteCount: 77))
        var seen: [Int] = []
        let (step, _) = c.takeGroup { front in
            seen.append(front)
            return (true, 500)
        }
        XCTAssertEqual(seen, [77])
        guard case .group(_, let bytes, let roll) = step else { return XCTFail("a group") }
        XCTAssertEqual(bytes, 77)
        XCTAssertTrue(roll)
    }

    func testPastItsLimitsTheQueueRefusesAsOverloaded() {
        var c = commit(bytesMax: 100, countMax: 3)
        XCTAssertNil(c.refusal(bytes: 100, name: "t/0"))
        XCTAssertEqual(c.refusal(bytes: 101, name: "t/0")?.code, .overloaded)
        for id in 1...3 { _ = c.enqueue(Item(id: id, byteCount: 1)) }
        let refusal = c.refusal(bytes: 1, name: "t/0")
        XCTAssertEqual(refusal?.code, .overloaded)
        XCTAssertTrue(refusal?.message.contains("t/0: the write queue holds 3 appends") ?? false, refusal?.message ?? "")
    }

    func testAFailureIsStickyEmptiesTheQueueAndRefusesEverythingAfter() {
        var c = commit()
        _ = c.enqueue(Item(id: 1, byteCount: 10))
        _ = c.takeGroup(plan: fits(1000))
        _ = c.enqueue(Item(id: 2, byteCount: 10))
        _ = c.enqueue(Item(id: 3, byteCount: 10))
        let refused = c.fail(StorageError(.readOnly, "first"))
        XCTAssertEqual(refused.map(\.id), [2, 3], "queued appends are handed back to be refused")
        XCTAssertEqual(c.queuedBytes, 0)
        _ = c.fail(StorageError(.readOnly, "second"))
        XCTAssertEqual(c.failure?.message, "first", "the first failure is kept")
        XCTAssertEqual(c.refusal(bytes: 1, name: "t/0")?.message, "first")
        XCTAssertTrue(c.isStopping)
        XCTAssertTrue(c.groupDone(), "the writer goes on to hand out the failure")
        guard case .idle = c.takeGroup(plan: fits(1000)).step else { return XCTFail("a failed partition's writer is idle") }
        XCTAssertFalse(c.writerScheduled)
    }

    func testCloseDrainsTheQueueThenShutsDownOnce() {
        var c = commit()
        _ = c.enqueue(Item(id: 1, byteCount: 10))
        XCTAssertEqual(c.requestClose(), .writerWillSee, "a scheduled writer sees the close")
        XCTAssertEqual(c.refusal(bytes: 1, name: "t/0")?.code, .closed, "nothing new is taken while closing")
        XCTAssertEqual(c.requestClose(), .writerWillSee, "a second close waits for the same shutdown")
        XCTAssertEqual(group(c.takeGroup(plan: fits(1000)).step), [1], "what was queued is written first")
        XCTAssertTrue(c.groupDone(), "closing: the writer goes on to shut down")
        guard case .shutdown = c.takeGroup(plan: fits(1000)).step else { return XCTFail("then it shuts down") }
        c.finishedClosing()
        XCTAssertEqual(c.lifecycle, .closed)
        XCTAssertEqual(c.requestClose(), .alreadyClosed)
    }

    func testClosingAnIdlePartitionSchedulesTheWriter() {
        var c = commit()
        XCTAssertEqual(c.requestClose(), .scheduleWriter)
        guard case .shutdown = c.takeGroup(plan: fits(1000)).step else { return XCTFail("shutdown") }
    }

    func testAFailureWhileClosingHandsBackTheQueueAndShutsDown() {
        var c = commit()
        _ = c.enqueue(Item(id: 1, byteCount: 10))
        _ = c.requestClose()
        _ = c.fail(StorageError(.readOnly, "disk"))
        let (step, refused) = c.takeGroup(plan: fits(1000))
        guard case .shutdown = step else { return XCTFail("shutdown") }
        XCTAssertEqual(refused, [], "fail handed the queue back already")
    }
}
