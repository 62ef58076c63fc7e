import Foundation
import LogFormat
import LogIO
import LogSimulation
import LogStorage
import XCTest

final class GroupCommitTests: XCTestCase {
    /// 64 appenders, each waiting for its durable ack before the next append, on the real
    /// disk: offsets dense and unique, each appender's in order, durable acks delivered in
    /// log order, and far fewer fsyncs than appends (the writes were grouped).
    func testConcurrentDurableAppendsAreGroupedAndAcknowledgedInLogOrder() async throws {
        let directory = try temporaryDirectory(self)
        let pool = IOThreadPool(threadCount: 2)
        defer { pool.shutdown() }
        var configuration = StorageConfiguration()
        configuration.segmentBytes = 1 << 20
        let log = try PartitionLog.open(
            directory: directory + "/p", topic: "t", partition: 0, environment: StorageEnvironment(fileIO: PosixFileIO(), configuration: configuration, clock: SystemWallClock(), executor: pool, logger: quietLogger))
        let ackOrder = AckRecorder()
        let appenderCount = 64
        let perAppender = 40
        let offsets = try await withThrowingTaskGroup(of: [Int64].self) { group in
            for appender in 0..<appenderCount {
                group.addTask {
                    var mine: [Int64] = []
                    for index in 0..<perAppender {
                        let batch = makeBatch("a\(appender)-\(index)", key: "k\(appender)")
                        let outcome = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<AppendOutcome, any Error>) in
                            log.append(batch, ackMode: .durable) { result in
                                if case .success(.committed(let appended)) = result { ackOrder.record(appended.baseOffset) }
                                continuation.resume(with: result.mapError { $0 as any Error })
                            }
                        }
                        mine.append(try outcome.committed().baseOffset)
                    }
                    return mine
                }
            }
            var all: [[Int64]] = []
            for try await mine in group { all.append(mine) }
            return all
        }
        for mine in offsets { XCTAssertEqual(mine, mine.sorted(), "each appender's batches keep their order") }
        XCTAssertEqual(Set(offsets.flatMap { $0 }), Set((0..<Int64(appenderCount * perAppender))), "offsets are dense and unique")
        let acks = ackOrder.values
        XCTAssertEqual(acks, acks.sorted(), "durable acknowledgements come in log order")
        let statistics = log.statistics
        XCTAssertEqual(statistics.appendCount, appenderCount * perAppender)
        XCTAssertEqual(statistics.fsyncCount, statistics.groupWriteCount, "one fsync per group write")
        XCTAssertLessThan(statistics.groupWriteCount, statistics.appendCount / 4, "group commit must batch concurrent appends")
        try await log.close()
    }

    final class AckRecorder: @unchecked Sendable {
        private let lock = NSLock()
        private var stored: [Int64] = []
        func record(_ offset: Int64) { lock.withLock { stored.append(offset) } }
        var values: [Int64] { lock.withLock { stored } }
    }

    func simulated(_ configure: (inout StorageConfiguration) -> Void = { _ in }) throws -> (PartitionLog, SimulatedDisk, ManualExecutor, SimulatedClock) {
        let disk = SimulatedDisk(seed: 3)
        try disk.makeDirectory("/d")
        let executor = ManualExecutor()
        let clock = SimulatedClock()
        var configuration = smallConfiguration()
        configure(&configuration)
        let log = try PartitionLog.open(
            directory: "/d/p", topic: "t", partition: 0, environment: StorageEnvironment(fileIO: disk, configuration: configuration, clock: clock, executor: executor, logger: quietLogger))
        return (log, disk, executor, clock)
    }

    func testAFullQueueRefusesAsOverloadedInsteadOfGrowing() throws {
        let (log, _, executor, _) = try simulated { $0.queuedAppendCountMax = 3 }
        let results = (0..<5).map { index -> ResultBox in
            let box = ResultBox()
            log.append(makeBatch("q\(index)")) { box.set($0) }
            return box
        }
        for box in results.suffix(2) {
            guard case .failure(let error)? = box.value else { return XCTFail("the fourth and fifth appends must be refused at once") }
            XCTAssertEqual(error.code, .overloaded)
            XCTAssertTrue(error.message.contains("retry later"), error.message)
        }
        XCTAssertEqual(log.statistics.overloadedCount, 2, "refusals are counted")
        executor.runAll()
        for box in results.prefix(3) { XCTAssertNoThrow(try XCTUnwrap(box.value).get().committed()) }
        XCTAssertNoThrow(try appendAndRun(log, executor, makeBatch("room again")))
    }

    func testWrittenAckComesAfterTheWriteAndNoneAckAtOnce() throws {
        // No pre-written space, so the group is exactly one write before the fsync.
        let (log, disk, executor, _) = try simulated { $0.preallocationBytes = 0 }
        let none = ResultBox()
        log.append(makeBatch("n"), ackMode: .none) { none.set($0) }
        XCTAssertEqual(try XCTUnwrap(none.value).get().committed().baseOffset, 0, "ack none completes as soon as it is queued")
        let written = ResultBox()
        log.append(makeBatch("w"), ackMode: .written) { written.set($0) }
        XCTAssertNil(written.value)
        // The disk freezes after the write: the written ack is out, the fsync never happens.
        disk.inject(.freeze(afterOperations: 1))
        executor.runAll()
        XCTAssertEqual(try XCTUnwrap(written.value).get().committed().baseOffset, 1)
        XCTAssertEqual(log.offsets.durableEnd, 0, "nothing was synced")
        XCTAssertEqual(try log.read(from: 0, maxBytes: 1 << 20).batchCount, 0, "readers see only durable data")
    }

    /// A failed fsync is never retried: the partition turns read-only, names the failure,
    /// fails what was pending and every later append, and still serves durable data.
    func testFailedFsyncTurnsThePartitionReadOnly() throws {
        let (log, disk, executor, _) = try simulated()
        _ = try appendAndRun(log, executor, makeBatch("kept"))
        let syncsBefore = disk.counters.dataSyncs
        disk.inject(.syncFails)
        let pending = [ResultBox(), ResultBox()]
        for (index, box) in pending.enumerated() { log.append(makeBatch("p\(index)")) { box.set($0) } }
        executor.runAll()
        for box in pending {
            guard case .failure(let error)? = box.value else { return XCTFail("pending appends must fail") }
            XCTAssertEqual(error.code, .readOnly)
            XCTAssertTrue(error.message.contains("fdatasync"), error.message)
        }
        XCTAssertEqual(disk.counters.dataSyncs, syncsBefore, "the failed fsync was not retried")
        let later = ResultBox()
        log.append(makeBatch("later")) { later.set($0) }
        guard case .failure(let error)? = later.value else { return XCTFail("a read-only partition refuses at once") }
        XCTAssertEqual(error.code, .readOnly)
        XCTAssertEqual(log.failure?.code, .readOnly)
        XCTAssertEqual(try recordValues(log.read(from: 0, maxBytes: 1 << 20).bytes), ["kept"])
    }

    func testFailedWriteTurnsThePartitionReadOnly() throws {
        let (log, disk, executor, _) = try simulated()
        disk.inject(.writeFails(.noSpace))
        let box = ResultBox()
        log.append(makeBatch("x"), ackMode: .written) { box.set($0) }
        executor.runAll()
        guard case .failure(let error)? = box.value else { return XCTFail("the append must fail") }
        XCTAssertTrue(error.message.contains("No space left"), error.message)
        XCTAssertNotNil(log.failure)
    }

    func testSegmentsRollBySizeAndByAge() throws {
        let (log, disk, executor, clock) = try simulated { $0.segmentAgeMilliseconds = 60_000 }
        for index in 0..<100 { _ = try appendAndRun(log, executor, makeBatch("size \(index)")) }
        let rolledBySize = log.statistics.segmentRollCount
        XCTAssertGreaterThan(rolledBySize, 0)
        for path in disk.filePaths() where path.hasSuffix(".log") {
            XCTAssertLessThanOrEqual(disk.content(of: path)!.count, 8192, "\(path) exceeds the segment size")
        }
        _ = try appendAndRun(log, executor, makeBatch("before"))
        clock.advance(by: 61_000)
        let after = try appendAndRun(log, executor, makeBatch("after"))
        XCTAssertEqual(log.statistics.segmentRollCount, rolledBySize + 1, "a segment older than the age limit rolls")
        XCTAssertTrue(disk.exists("/d/p/" + SegmentFileName.name(baseOffset: after.baseOffset, kind: .log)))
    }

    /// A new segment file and its directory entry are synced before data in it is acked;
    /// the sealed segment was fully synced before. A power loss right after the first ack
    /// in the new segment keeps everything.
    func testRolledSegmentSurvivesAPowerLossRightAfterItsFirstAck() throws {
        let (log, disk, executor, clock) = try simulated()
        var last = AppendResult(baseOffset: 0, lastOffset: 0, appendTime: 0)
        while log.statistics.segmentRollCount == 0 { last = try appendAndRun(log, executor, makeBatch("r\(last.baseOffset)")) }
        disk.crash(.powerLoss)
        executor.dropAll()
        let reopened = try PartitionLog.open(
            directory: "/d/p", topic: "t", partition: 0, environment: StorageEnvironment(fileIO: disk, configuration: smallConfiguration(), clock: clock, executor: executor, logger: quietLogger))
        XCTAssertEqual(reopened.offsets.next, last.lastOffset + 1)
    }
}
