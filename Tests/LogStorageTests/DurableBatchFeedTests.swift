import Foundation
import LogFormat
import LogIO
import LogSimulation
import LogStorage
import Synchronization
import XCTest

/// The writer's side of the live feed: batches in log order, offered before the append is
/// answered, and an overflow that drops batches instead of making the writer wait.
final class DurableBatchFeedTests: XCTestCase {
    private func openPartition(_ directory: String, pool: IOThreadPool) throws -> PartitionLog {
        try PartitionLog.open(
            directory: directory + "/p0", topic: "t", partition: 0,
            environment: StorageEnvironment(fileIO: PosixFileIO(), configuration: smallConfiguration(), executor: pool, logger: quietLogger))
    }

    func testEveryDurableBatchIsOfferedInOrderBeforeItsAcknowledgement() async throws {
        let directory = try temporaryDirectory(self)
        let pool = IOThreadPool(threadCount: 1)
        defer { pool.shutdown() }
        let log = try openPartition(directory, pool: pool)
        let wakes = Atomic<Int>(0)
        let feed = DurableBatchFeed(bytesMax: 1 << 20, wake: { _, _ in wakes.add(1, ordering: .relaxed) })
        log.feedDurableBatches(to: feed)
        for index in 0..<20 {
            let result = try await log.append(makeBatch("event \(index)")).committed()
            // Answered durable: the batch is in the feed already.
            let taken = feed.take()
            XCTAssertFalse(taken.overflowed)
            XCTAssertEqual(taken.batches.count, 1)
            XCTAssertEqual(taken.batches.first?.partition, 0)
            let header = try RecordBatchHeader.read(bytes: try XCTUnwrap(taken.batches.first).bytes)
            XCTAssertEqual(header.baseOffset, result.baseOffset)
        }
        XCTAssertEqual(wakes.load(ordering: .relaxed), 20)
        log.feedDurableBatches(to: Optional<DurableBatchFeed>.none)
        _ = try await log.append(makeBatch("not fed")).committed()
        XCTAssertTrue(feed.take().batches.isEmpty)
        try await log.close()
    }

    /// A group write's batches reach the feed together, with one wake-up of its consumer
    /// (the live ingest thread), not one per batch.
    func testAGroupIsOfferedWithOneWakeUp() throws {
        let directory = try temporaryDirectory(self)
        let executor = ManualExecutor()
        let log = try PartitionLog.open(
            directory: directory + "/p0", topic: "t", partition: 0,
            environment: StorageEnvironment(fileIO: PosixFileIO(), configuration: smallConfiguration(), executor: executor, logger: quietLogger))
        let wakes = Atomic<Int>(0)
        let queuedAtWake = Atomic<Int>(0)
        let feed = DurableBatchFeed(bytesMax: 1 << 20, wake: { queued, _ in
            wakes.add(1, ordering: .relaxed)
            queuedAtWake.store(queued, ordering: .relaxed)
        })
        log.feedDurableBatches(to: feed)
        let answered = Atomic<Int>(0)
        for index in 0..<5 {
            log.append(makeBatch("event \(index)")) { result in
                if case .success = result { answered.add(1, ordering: .relaxed) }
            }
        }
        executor.runAll()
        XCTAssertEqual(answered.load(ordering: .relaxed), 5)
        XCTAssertEqual(log.statistics.groupWriteCount, 1, "the five appends went in one group")
        XCTAssertEqual(wakes.load(ordering: .relaxed), 1)
        XCTAssertEqual(queuedAtWake.load(ordering: .relaxed), feed.queuedBytes, "the wake-up says how much waits")
        let offsets = try feed.take().batches.map { try RecordBatchHeader.read(bytes: $0.bytes).baseOffset }
        XCTAssertEqual(offsets, [0, 1, 2, 3, 4])
        log.close { _ in }
        executor.runAll()
    }

    func testAFullFeedDropsEverythingAndSaysSoUntilReset() async throws {
        let directory = try temporaryDirectory(self)
        let pool = IOThreadPool(threadCount: 1)
        defer { pool.shutdown() }
        let log = try openPartition(directory, pool: pool)
        let batchBytes = makeBatch("event 0").count
        let sawOverflow = Atomic<Bool>(false)
        let feed = DurableBatchFeed(bytesMax: batchBytes * 3, wake: { _, overflowed in
            if overflowed { sawOverflow.store(true, ordering: .relaxed) }
        })
        log.feedDurableBatches(to: feed)
        // Nobody takes: the fourth batch does not fit; the writer goes on acknowledging.
        for index in 0..<10 { _ = try await log.append(makeBatch("event \(index)")).committed() }
        XCTAssertEqual(log.offsets.durableEnd, 10)
        XCTAssertEqual(feed.overflowCount, 1)
        XCTAssertTrue(sawOverflow.load(ordering: .relaxed), "the consumer's wake-up hears of the overflow")
        XCTAssertEqual(feed.queuedBytes, 0, "an overflowed feed holds nothing")
        var taken = feed.take()
        XCTAssertTrue(taken.overflowed)
        XCTAssertTrue(taken.batches.isEmpty)
        XCTAssertTrue(feed.take().overflowed, "the overflow stays until the consumer resets")
        feed.reset()
        _ = try await log.append(makeBatch("event 10")).committed()
        taken = feed.take()
        XCTAssertFalse(taken.overflowed)
        XCTAssertEqual(taken.batches.count, 1)
        try await log.close()
    }
}
