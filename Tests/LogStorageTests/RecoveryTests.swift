import LogFormat
import LogIO
import LogSimulation
@testable import LogStorage
import Logging
import XCTest

/// One test per row of the recovery decision table (RecoveryPlan.swift, Docs/durability.md),
/// on the simulated disk so every byte is where the test puts it.
final class RecoveryTests: XCTestCase {
    let directory = "/d/t/0"
    var disk = SimulatedDisk(seed: 1)
    let clock = SimulatedClock()
    var executor = ManualExecutor()
    var messages = LogCapture()

    override func setUpWithError() throws {
        disk = SimulatedDisk(seed: 1)
        executor = ManualExecutor()
        messages = LogCapture()
        try disk.makeDirectory("/d")
        try disk.makeDirectory("/d/t")
    }

    /// Without pre-written space, so the file's end is the data's end and a test can put
    /// bytes there (the pre-written rows have their own tests below).
    func configuration(group: Int = 4096, preallocation: Int = 0) -> StorageConfiguration {
        var configuration = smallConfiguration()
        configuration.preallocationBytes = preallocation
        configuration.groupWriteBytesMax = group
        configuration.batchLimits = BatchLimits(batchBytesMax: min(group, 2048))
        configuration.segmentBytes = 16384
        configuration.recoveryCheckpointIntervalBytes = 1 << 20
        return configuration
    }

    func open(_ configuration: StorageConfiguration? = nil) throws -> PartitionLog {
        try PartitionLog.open(
            directory: directory, topic: "t", partition: 0, environment: StorageEnvironment(fileIO: disk, configuration: configuration ?? self.configuration(), clock: clock, executor: executor, logger: messages.logger))
    }

    /// Appends `count` one-record batches of about 120 bytes, each durably.
    func fill(_ log: PartitionLog, count: Int, from start: Int = 0) throws {
        for index in start..<(start + count) {
            _ = try appendAndRun(log, executor, makeBatch(String(repeating: "v", count: 60) + "\(index)"))
        }
    }

    func logPath(_ base: Int64 = 0) -> String { directory + "/" + SegmentFileName.name(baseOffset: base, kind: .log) }

    func crash(_ log: PartitionLog) {
        disk.crash(.process)
        executor.dropAll()
    }

    func appendRaw(_ bytes: [UInt8], to path: String) throws {
        let file = try disk.open(path, mode: .readWrite)
        try file.writeAll(bytes, at: try file.size())
    }

    func testCleanShutdownReopensWithoutReReading() throws {
        let log = try open()
        try fill(log, count: 40)
        try closeAndRun(log)
        let reopened = try open()
        XCTAssertTrue(reopened.recoveryReport.cleanShutdown)
        XCTAssertEqual(reopened.recoveryReport.scannedBytes, 0)
        XCTAssertNil(reopened.recoveryReport.truncation)
        XCTAssertEqual(reopened.offsets.next, 40)
    }

    func testBytesAfterTheCleanEndAreCorruptionNotATornTail() throws {
        let log = try open()
        try fill(log, count: 10)
        try closeAndRun(log)
        let size = disk.content(of: logPath())!.count
        try appendRaw([1, 2, 3, 4], to: logPath())
        try assertCheck(refusesOpen: true)
        XCTAssertThrowsError(try open()) { error in
            let storageError = error as? StorageError
            XCTAssertEqual(storageError?.code, .corruption)
            XCTAssertTrue(storageError?.message.contains(self.logPath()) ?? false)
            XCTAssertTrue(storageError?.message.contains("\(size)") ?? false, "\(error)")
        }
        XCTAssertEqual(disk.content(of: logPath())!.count, size + 4, "nothing is truncated")
    }

    func testTornTailWithinTheWindowIsTruncatedAndLogged() throws {
        let log = try open()
        try fill(log, count: 10)
        crash(log)
        let size = disk.content(of: logPath())!.count
        // Half a batch: what a torn last group write leaves.
        let torn = Array(makeBatch("lost").prefix(50))
        try appendRaw(torn, to: logPath())
        try assertCheck(refusesOpen: false)
        let reopened = try open()
        let cut = try XCTUnwrap(reopened.recoveryReport.truncation)
        XCTAssertEqual(cut.position, Int64(size))
        XCTAssertEqual(cut.droppedBytes, 50)
        XCTAssertEqual(cut.nextOffset, 10)
        XCTAssertEqual(disk.content(of: logPath())!.count, size)
        XCTAssertTrue(disk.isSynced(logPath()), "the cut is synced before the partition takes appends")
        XCTAssertEqual(reopened.statistics.truncationCount, 1)
        let logged = messages.entries.first { $0.message == "truncated a torn tail" }
        XCTAssertEqual(logged?.metadata["position"], "\(size)")
        XCTAssertEqual(logged?.metadata["droppedBytes"], "50")
        XCTAssertEqual(logged?.metadata["nextOffset"], "10")
    }

    func testGarbageTailIsTornWhenWithinTheWindow() throws {
        let log = try open()
        try fill(log, count: 5)
        crash(log)
        var generator = SplitMix64(seed: 9)
        try appendRaw((0..<3000).map { _ in UInt8.random(in: 0...255, using: &generator) }, to: logPath())
        try assertCheck(refusesOpen: false)
        let reopened = try open()
        XCTAssertEqual(reopened.recoveryReport.truncation?.droppedBytes, 3000)
        XCTAssertEqual(reopened.offsets.next, 5)
    }

    func testInvalidBatchBeyondTheWindowIsCorruptionNamingFileAndByte() throws {
        let log = try open(configuration(group: 1024))
        try fill(log, count: 60)
        crash(log)
        let content = disk.content(of: logPath())!
        let batchSize = makeBatch(String(repeating: "v", count: 60) + "0").count
        let victim = 3 * batchSize
        XCTAssertGreaterThan(content.count - victim, 1024)
        disk.flipBit(path: logPath(), byteOffset: victim + 30, bit: 2)
        try assertCheck(refusesOpen: true)
        XCTAssertThrowsError(try open(configuration(group: 1024))) { error in
            XCTAssertEqual((error as? StorageError)?.code, .corruption)
            XCTAssertTrue((error as? StorageError)?.message.hasPrefix("\(self.logPath()): invalid batch at byte \(victim): ") ?? false, "\(error)")
            XCTAssertEqual((error as? StorageError)?.path, self.logPath(), "the file is a field, not only text")
            XCTAssertEqual((error as? StorageError)?.position, Int64(victim))
        }
        XCTAssertEqual(disk.content(of: logPath())!.count, content.count, "corruption is never truncated away")
    }

    func testTheRecordedGroupWindowIsUsedWhenTheConfigurationShrinks() throws {
        let log = try open(configuration(group: 4096))
        try fill(log, count: 10)
        crash(log)
        try appendRaw([UInt8](repeating: 0xAB, count: 3000), to: logPath())
        // Configured window now 1024 bytes, but the run that wrote used 4096: still a tear.
        try assertCheck(refusesOpen: false)
        let reopened = try open(configuration(group: 1024))
        XCTAssertEqual(reopened.recoveryReport.truncation?.droppedBytes, 3000)
    }

    func testRecoveryReReadsOnlyFromTheCheckpoint() throws {
        var small = configuration()
        small.recoveryCheckpointIntervalBytes = 1024
        let log = try open(small)
        try fill(log, count: 40)
        XCTAssertGreaterThan(log.statistics.checkpointCount, 0)
        crash(log)
        let reopened = try open(small)
        XCTAssertFalse(reopened.recoveryReport.cleanShutdown)
        XCTAssertGreaterThan(reopened.recoveryReport.recoveryStartPosition, 0, "the re-read starts at the recovery point")
        XCTAssertLessThan(reopened.recoveryReport.scannedBytes, Int64(disk.content(of: logPath())!.count))
        XCTAssertEqual(reopened.offsets.next, 40)
    }

    func testMissingSealedIndexIsRebuiltAndReadsStillWork() throws {
        let log = try open()
        try fill(log, count: 300)
        XCTAssertGreaterThan(log.statistics.segmentRollCount, 0)
        try closeAndRun(log)
        let sealedIndex = directory + "/" + SegmentFileName.name(baseOffset: 0, kind: .index)
        try disk.remove(sealedIndex)
        try assertCheck(refusesOpen: false)
        let reopened = try open()
        XCTAssertEqual(reopened.recoveryReport.rebuiltIndexes, [0])
        XCTAssertTrue(disk.exists(sealedIndex), "the rebuilt index is written back")
        let read = try reopened.read(from: 77, maxBytes: 1)
        XCTAssertEqual(try recordValues(read.bytes), [String(repeating: "v", count: 60) + "77"])
    }

    func testCorruptIndexFileIsRebuiltNotTrusted() throws {
        let log = try open()
        try fill(log, count: 300)
        try closeAndRun(log)
        let sealedIndex = directory + "/" + SegmentFileName.name(baseOffset: 0, kind: .index)
        disk.flipBit(path: sealedIndex, byteOffset: IndexFile.headerSize + 3, bit: 0)
        try assertCheck(refusesOpen: false)
        let reopened = try open()
        XCTAssertEqual(reopened.recoveryReport.rebuiltIndexes, [0])
        XCTAssertEqual(try recordValues(reopened.read(from: 150, maxBytes: 1).bytes), [String(repeating: "v", count: 60) + "150"])
    }

    func testGapBetweenSegmentsIsCorruption() throws {
        let log = try open()
        try fill(log, count: 300)
        try closeAndRun(log)
        let segments = disk.filePaths().filter { $0.hasSuffix(".log") }
        XCTAssertGreaterThanOrEqual(segments.count, 3)
        try disk.remove(segments[1])
        try assertCheck(refusesOpen: true)
        XCTAssertThrowsError(try open()) { error in
            XCTAssertEqual((error as? StorageError)?.code, .corruption)
            XCTAssertTrue((error as? StorageError)?.message.contains("previous segment ends at offset") ?? false, "\(error)")
        }
    }

    func testBitFlipInASealedSegmentIsReportedOnReadNeverReturned() throws {
        let log = try open()
        try fill(log, count: 300)
        try closeAndRun(log)
        disk.flipBit(path: logPath(), byteOffset: 500, bit: 7)
        try assertCheck(refusesOpen: false)
        let reopened = try open()
        XCTAssertThrowsError(try reopened.read(from: 0, maxBytes: 1 << 20)) { error in
            XCTAssertEqual((error as? StorageError)?.code, .corruption)
            XCTAssertTrue((error as? StorageError)?.message.hasPrefix("\(self.logPath()): invalid batch at byte ") ?? false, "\(error)")
        }
        XCTAssertNoThrow(try reopened.read(from: 290, maxBytes: 100), "other segments still read")
    }

    /// Where the batches of a segment's bytes end, by their lengths (a valid batch may end
    /// in zero bytes, so the last non-zero byte is not it).
    func dataEnd(_ content: [UInt8]) -> Int {
        var position = 0
        while position + RecordBatchHeader.size <= content.count {
            let length = content[(position + 8)..<(position + 12)].reduce(0) { ($0 << 8) | Int($1) }
            if length < Int(RecordBatchHeader.batchLengthMin) || position + 12 + length > content.count { break }
            position += 12 + length
        }
        return position
    }

    func testPreWrittenZerosAfterTheDataAreTrimmedNotTorn() throws {
        let log = try open(configuration(preallocation: 8192))
        try fill(log, count: 20)
        let dataEnd = Int64(self.dataEnd(disk.content(of: logPath())!))
        XCTAssertGreaterThan(Int64(disk.content(of: logPath())!.count), dataEnd + 4096, "the writer keeps zeros ahead of the data")
        crash(log)
        try assertCheck(refusesOpen: false)
        let reopened = try open(configuration(preallocation: 8192))
        XCTAssertNil(reopened.recoveryReport.truncation, "zeros are not a torn tail")
        XCTAssertGreaterThan(reopened.recoveryReport.preallocatedBytesTrimmed, 0)
        XCTAssertEqual(Int64(disk.content(of: logPath())!.count), dataEnd)
        XCTAssertEqual(reopened.offsets.next, 20)
    }

    func testTornWriteInsidePreWrittenSpaceIsCut() throws {
        let log = try open(configuration(preallocation: 8192))
        try fill(log, count: 20)
        crash(log)
        let content = disk.content(of: logPath())!
        let dataEnd = self.dataEnd(content)
        let file = try disk.open(logPath(), mode: .readWrite)
        try file.writeAll(Array(makeBatch("torn").prefix(70)), at: Int64(dataEnd))
        try assertCheck(refusesOpen: false)
        let reopened = try open(configuration(preallocation: 8192))
        let cut = try XCTUnwrap(reopened.recoveryReport.truncation)
        XCTAssertEqual(cut.position, Int64(dataEnd))
        XCTAssertEqual(cut.droppedBytes, Int64(content.count - dataEnd))
        XCTAssertTrue(cut.reason.contains("70 bytes were written after it"), cut.reason)
    }

    func testCleanCloseAndRollTrimPreWrittenSpace() throws {
        let log = try open(configuration(preallocation: 8192))
        try fill(log, count: 200)
        XCTAssertGreaterThan(log.statistics.segmentRollCount, 0)
        try closeAndRun(log)
        for path in disk.filePaths() where path.hasSuffix(".log") {
            let content = disk.content(of: path)!
            XCTAssertEqual(dataEnd(content), content.count, "\(path) has bytes after its last batch after a seal or clean shutdown")
        }
        XCTAssertTrue(try open(configuration(preallocation: 8192)).recoveryReport.cleanShutdown)
    }

    /// `lodestone check`, run before the open, says whether the open will refuse the
    /// partition (both act on `RecoveryPlan`); the test's open then shows it.
    func assertCheck(refusesOpen expected: Bool, file: StaticString = #filePath, line: UInt = #line) throws {
        let (_, findings) = StoreChecker.checkPartition(directory: directory, topic: "t", partition: 0, fileIO: disk)
        XCTAssertEqual(findings.contains(where: \.refusesOpen), expected, "\(findings)", file: file, line: line)
        if expected { XCTAssertTrue(findings.contains(where: \.isFault), "a refusal is a fault", file: file, line: line) }
    }

    func testRecoveryFromACheckpointKeepsTheSegmentsFirstAppendTime() throws {
        var small = configuration()
        small.recoveryCheckpointIntervalBytes = 1024
        let first = clock.nowMilliseconds()
        let log = try open(small)
        try fill(log, count: 1)
        clock.advance(by: 60_000)
        try fill(log, count: 39, from: 1)
        crash(log)
        let reopened = try open(small)
        XCTAssertGreaterThan(reopened.recoveryReport.recoveryStartPosition, 0, "the re-read starts past the first batch")
        // Roll by age counts from the segment's first append, not the first one re-read.
        XCTAssertEqual(reopened.state.withLock { $0.active.firstTimestamp }, first)
    }

    func closeAndRun(_ log: PartitionLog) throws {
        let box = VoidBox()
        log.close { box.result = $0 }
        executor.runAll()
        try XCTUnwrap(box.result).get()
    }
}

final class VoidBox: @unchecked Sendable {
    var result: Result<Void, StorageError>?
}

/// Keeps what a Logger logs, for tests that pin log lines.
final class LogCapture: @unchecked Sendable {
    struct Entry {
        var level: Logger.Level
        var message: String
        var metadata: [String: String]
    }

    private let lock = NSLock()
    private var stored: [Entry] = []

    var entries: [Entry] { lock.withLock { stored } }

    var logger: Logger {
        Logger(label: "capture") { _ in Handler(capture: self) }
    }

    struct Handler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            var all = metadata
            for (key, value) in event.metadata ?? [:] { all[key] = value }
            let entry = Entry(level: event.level, message: "\(event.message)", metadata: all.mapValues { "\($0)" })
            capture.lock.withLock { capture.stored.append(entry) }
        }
    }
}
