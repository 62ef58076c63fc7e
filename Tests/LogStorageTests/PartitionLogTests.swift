import Foundation
import LogFormat
import LogIO
import LogSimulation
import LogStorage
import XCTest

final class PartitionLogTests: XCTestCase {
    func openReal(_ directory: String, configuration: StorageConfiguration = smallConfiguration(), pool: IOThreadPool) throws -> PartitionLog {
        try PartitionLog.open(
            directory: directory + "/p0", topic: "t", partition: 0, environment: StorageEnvironment(fileIO: PosixFileIO(), configuration: configuration, clock: SystemWallClock(), executor: pool, logger: quietLogger))
    }

    func testDurableAppendsGetDenseOffsetsAndReadBack() async throws {
        let directory = try temporaryDirectory(self)
        let pool = IOThreadPool(threadCount: 2)
        defer { pool.shutdown() }
        let log = try openReal(directory, pool: pool)
        var expected: [String] = []
        for index in 0..<200 {
            let result = try await log.append(makeBatch("event \(index)")).committed()
            XCTAssertEqual(result.baseOffset, Int64(index))
            XCTAssertEqual(result.lastOffset, Int64(index))
            expected.append("event \(index)")
        }
        XCTAssertEqual(log.offsets, PartitionOffsets(start: 0, durableEnd: 200, next: 200))
        XCTAssertGreaterThan(log.statistics.segmentRollCount, 0, "8 KiB segments must have rolled")
        var values: [String] = []
        var offset: Int64 = 0
        while offset < 200 {
            let read = try log.read(from: offset, maxBytes: 1000)
            XCTAssertGreaterThan(read.batchCount, 0)
            values += try recordValues(read.bytes)
            offset = read.nextOffset
        }
        XCTAssertEqual(values, expected)
        try await log.close()
    }

    func testReadFromTheMiddleStartsAtTheBatchHoldingTheOffset() async throws {
        let directory = try temporaryDirectory(self)
        let pool = IOThreadPool(threadCount: 1)
        defer { pool.shutdown() }
        let log = try openReal(directory, pool: pool)
        for index in 0..<50 {
            let batch = RecordBatch.make(values: (0..<3).map { (nil, Array("b\(index)r\($0)".utf8)) }, timestamp: 0).encoded()
            _ = try await log.append(batch)
        }
        let read = try log.read(from: 31, maxBytes: 1)
        XCTAssertEqual(read.batchCount, 1, "the first batch is returned whole even past maxBytes")
        XCTAssertEqual(try recordValues(read.bytes), ["b10r0", "b10r1", "b10r2"])
        XCTAssertEqual(read.nextOffset, 33)
        XCTAssertThrowsError(try log.read(from: 151, maxBytes: 100)) { error in
            XCTAssertEqual((error as? StorageError)?.code, .offsetOutOfRange)
        }
        XCTAssertEqual(try log.read(from: 150, maxBytes: 100).batchCount, 0, "the end of the log reads as empty")
        try await log.close()
    }

    func testAppendTimeIsStampedAndNeverDecreases() async throws {
        let directory = try temporaryDirectory(self)
        let clock = SimulatedClock(milliseconds: 5000)
        let executor = ManualExecutor()
        let log = try PartitionLog.open(
            directory: directory + "/p", topic: "t", partition: 0, environment: StorageEnvironment(fileIO: PosixFileIO(), configuration: smallConfiguration(), clock: clock, executor: executor, logger: quietLogger))
        let first = try appendAndRun(log, executor, makeBatch("a", timestamp: 1))
        XCTAssertEqual(first.appendTime, 5000)
        clock.set(4000)
        let second = try appendAndRun(log, executor, makeBatch("b", timestamp: 99_999))
        XCTAssertEqual(second.appendTime, 5000, "a clock step back is clamped")
        XCTAssertEqual(log.statistics.clockStepBackCount, 1)
        clock.set(7000)
        _ = try appendAndRun(log, executor, makeBatch("c"))
        let read = try log.read(from: 0, maxBytes: 1 << 20)
        var position = 0
        var times: [Int64] = []
        while position < read.bytes.count {
            let header = try read.bytes.withUnsafeBytes { try RecordBatchHeader.read(UnsafeRawBufferPointer(rebasing: $0[position...])) }
            XCTAssertEqual(header.attributes.timestampType, .logAppendTime)
            XCTAssertEqual(header.baseTimestamp, header.maxTimestamp)
            times.append(header.maxTimestamp)
            position += header.totalSize
        }
        XCTAssertEqual(times, [5000, 5000, 7000])
        XCTAssertEqual(try log.offset(atOrAfterTime: 0), 0)
        XCTAssertEqual(try log.offset(atOrAfterTime: 5000), 0)
        XCTAssertEqual(try log.offset(atOrAfterTime: 5001), 2)
        XCTAssertEqual(try log.offset(atOrAfterTime: 7000), 2)
        XCTAssertNil(try log.offset(atOrAfterTime: 7001))
    }

    func testReopenAfterCleanCloseKeepsEverything() async throws {
        let directory = try temporaryDirectory(self)
        let pool = IOThreadPool(threadCount: 1)
        defer { pool.shutdown() }
        var log = try openReal(directory, pool: pool)
        for index in 0..<120 { _ = try await log.append(makeBatch("v\(index)")) }
        try await log.close()
        log = try openReal(directory, pool: pool)
        XCTAssertTrue(log.recoveryReport.cleanShutdown)
        XCTAssertEqual(log.recoveryReport.scannedBytes, 0, "nothing is re-read after a clean shutdown")
        XCTAssertEqual(log.recoveryReport.rebuiltIndexes, [])
        XCTAssertEqual(log.offsets.next, 120)
        let next = try await log.append(makeBatch("after")).committed()
        XCTAssertEqual(next.baseOffset, 120)
        var values: [String] = []
        var offset: Int64 = 0
        while offset < 121 {
            let read = try log.read(from: offset, maxBytes: 4096)
            values += try recordValues(read.bytes)
            offset = read.nextOffset
        }
        XCTAssertEqual(values, (0..<120).map { "v\($0)" } + ["after"])
        try await log.close()
    }

    func testAppendsAfterCloseAreRefused() async throws {
        let directory = try temporaryDirectory(self)
        let pool = IOThreadPool(threadCount: 1)
        defer { pool.shutdown() }
        let log = try openReal(directory, pool: pool)
        try await log.close()
        do {
            _ = try await log.append(makeBatch("late"))
            XCTFail("an append after close must fail")
        } catch {
            XCTAssertEqual(error.code, .closed)
        }
    }

    func testInvalidBatchIsRefusedAndNothingIsWritten() async throws {
        let directory = try temporaryDirectory(self)
        let pool = IOThreadPool(threadCount: 1)
        defer { pool.shutdown() }
        let log = try openReal(directory, pool: pool)
        var bad = makeBatch("x")
        bad[bad.count - 1] ^= 1
        do {
            _ = try await log.append(bad)
            XCTFail("a batch with a bad CRC must be refused")
        } catch {
            XCTAssertEqual(error.code, .invalidBatch)
            XCTAssertTrue(error.message.contains("CRC"), error.message)
        }
        XCTAssertEqual(log.offsets.next, 0)
        XCTAssertEqual(log.statistics.invalidBatchCount, 1)
        try await log.close()
    }
}
