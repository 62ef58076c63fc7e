import Foundation
import LogFormat
import LogIO
import LogStorage
import Logging
import PauliZ
import PauliZReplay
import XCTest

/// Offline replay of a real data directory: the same rows as the engine fed the same
/// events in memory, whatever the partitions, segments and compression.
final class ReplayTests: XCTestCase {
    static let quiet: Logger = {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return logger
    }()

    func makeStore(_ events: [FlipEvent], partitions: Int = 3, polarityMap: [String: Int8]? = nil, keepOpen: ((LogStore) async throws -> Void)? = nil) async throws -> String {
        try await makeFlipStore(self, events, partitions: partitions, polarityMap: polarityMap, keepOpen: keepOpen)
    }

    func replay(_ directory: String, _ query: PauliZQuery, filter: ResourceFilter = .all) throws -> [String] {
        let (result, _) = try PauliZReplay.run(directory: directory, topic: "flips", filter: filter) { configuration in
            var query = query
            query.polarityMap = configuration.polarityMap ?? [:]
            return query
        }
        let lines = try printed(result)
        return lines.rows + lines.storms
    }

    func testReplayEqualsTheEngineOverTheSameEvents() async throws {
        var traffic = SmallTraffic(seed: 77)
        let events = traffic.events(count: 600)
        let map: [String: Int8] = ["on": 1, "off": -1]
        let directory = try await makeStore(events, polarityMap: map)
        let segments = try FileManager.default.contentsOfDirectory(atPath: directory + "/topics/flips/0").filter { $0.hasSuffix(".log") }
        XCTAssertGreaterThan(segments.count, 1, "the test means to cross segment boundaries")
        let query = PauliZQuery(windowMilliseconds: 10, hopMilliseconds: 5, storm: StormParameters(intervalMilliseconds: 8, enter: 3, exit: 1), polarityMap: map)
        let expected = try runEngine(events, query)
        XCTAssertFalse(expected.rows.isEmpty)
        XCTAssertFalse(expected.storms.isEmpty, "the traffic should hold storms for these parameters")
        XCTAssertEqual(try replay(directory, query), expected.rows + expected.storms)
    }

    /// Per-resource rows and episodes do not depend on how many partitions the topic has.
    func testOutputIsIndependentOfThePartitionCount() async throws {
        var traffic = SmallTraffic(seed: 31)
        let events = traffic.events(count: 500)
        let query = PauliZQuery(windowMilliseconds: 6, hopMilliseconds: 3, storm: StormParameters(intervalMilliseconds: 5, enter: 2, exit: 0))
        var answers: [[String]] = []
        for partitions in [1, 2, 5] {
            let directory = try await makeStore(events, partitions: partitions)
            answers.append(try replay(directory, query))
        }
        XCTAssertFalse(answers[0].isEmpty)
        XCTAssertEqual(answers[1], answers[0])
        XCTAssertEqual(answers[2], answers[0])
    }

    /// A prefix keeps its resources' rows; the others still set the horizon.
    func testFilterKeepsTheTopicsHorizon() async throws {
        let events = [
            flip("a/x", 0, to: "on", polarity: 1, seq: 1),
            flip("a", 5, to: "on", polarity: 1, seq: 1),
            flip("ab", 7, to: "on", polarity: 1, seq: 1),
            flip("b", 100, to: "on", polarity: 1, seq: 1),
        ]
        let directory = try await makeStore(events)
        let query = PauliZQuery(windowMilliseconds: 1_000)
        let rows = try replay(directory, query, filter: .prefix("a"))
        XCTAssertEqual(rows, [
            row("a", 0, 1_000, events: 1, flips: 0, up: 0, down: 0, rate: "0.0", coverage: "null", known: 95, z: "1.0"),
            row("a/x", 0, 1_000, events: 1, flips: 0, up: 0, down: 0, rate: "0.0", coverage: "null", known: 100, z: "1.0"),
        ])
        XCTAssertEqual(try replay(directory, query, filter: .exact("ab")), [
            row("ab", 0, 1_000, events: 1, flips: 0, up: 0, down: 0, rate: "0.0", coverage: "null", known: 93, z: "1.0"),
        ])
    }

    func testRefusedWhileTheStoreIsOpen() async throws {
        var failure: (any Error)?
        _ = try await makeStore([flip("r", 0, to: "on", seq: 1)]) { store in
            do {
                _ = try self.replay(store.directory, PauliZQuery(windowMilliseconds: 1_000))
            } catch {
                failure = error
            }
        }
        let error = try XCTUnwrap(failure as? StorageError)
        XCTAssertEqual(error.code, .locked)
    }

    func testRawTopicsAreRefused() async throws {
        let directory = try await makeStore([])
        let pool = IOThreadPool(threadCount: 1)
        defer { pool.shutdown() }
        let store = try LogStore.open(directory: directory, environment: StorageEnvironment(fileIO: PosixFileIO(), executor: pool, logger: Self.quiet))
        try store.createTopic(name: "raw", partitionCount: 1, kind: .raw)
        try await store.close()
        XCTAssertThrowsError(try PauliZReplay.run(directory: directory, topic: "raw") { _ in PauliZQuery(windowMilliseconds: 1) }) { error in
            XCTAssertTrue("\(error)".contains("raw topic"), "\(error)")
        }
    }

    /// A damaged byte in a sealed segment is an error naming the file, never data.
    func testCorruptionIsReportedNotRead() async throws {
        var traffic = SmallTraffic(seed: 5)
        let directory = try await makeStore(traffic.events(count: 300), partitions: 1)
        let path = directory + "/topics/flips/0/00000000000000000000.log"
        var bytes = try XCTUnwrap(FileManager.default.contents(atPath: path))
        bytes[bytes.count / 2] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try replay(directory, PauliZQuery(windowMilliseconds: 10))) { error in
            XCTAssertEqual((error as? StorageError)?.code, .corruption, "\(error)")
            XCTAssertTrue("\(error)".contains("00000000000000000000.log"), "\(error)")
            XCTAssertEqual((error as? StorageError)?.path, path)
        }
    }

    /// A missing segment is a gap in the offsets: refused, as open and check refuse it,
    /// never replayed as if its events had not happened.
    func testAMissingSegmentIsAGapNotFewerEvents() async throws {
        var traffic = SmallTraffic(seed: 7)
        let directory = try await makeFlipStore(self, traffic.events(count: 900), partitions: 1)
        let partition = directory + "/topics/flips/0"
        let logs = try FileManager.default.contentsOfDirectory(atPath: partition).filter { $0.hasSuffix(".log") }.sorted()
        XCTAssertGreaterThan(logs.count, 2)
        try FileManager.default.removeItem(atPath: partition + "/" + logs[1])
        XCTAssertThrowsError(try replay(directory, PauliZQuery(windowMilliseconds: 10))) { error in
            XCTAssertEqual((error as? StorageError)?.code, .corruption, "\(error)")
            XCTAssertEqual((error as? StorageError)?.path, partition + "/" + logs[2])
            XCTAssertTrue("\(error)".contains("previous segment ends at offset"), "\(error)")
        }
        let findings = try StoreChecker.check(directory: directory, fileIO: PosixFileIO()).findings
        XCTAssertTrue(findings.contains { $0.refusesOpen && $0.path == partition + "/" + logs[2] }, "\(findings)")
    }
}


/// Segment summaries: written when a flip segment is sealed, used to skip segments
/// without the resources asked for, never trusted when damaged.
final class SegmentSummaryReplayTests: XCTestCase {
    /// One resource in the first batch only, then other traffic over many segments.
    func makeStore() async throws -> (String, [FlipEvent]) {
        var traffic = SmallTraffic(seed: 9)
        let events = [flip("lonely/one", 3, to: "on", polarity: 1, seq: 1)] + traffic.events(count: 900)
        let directory = try await makeFlipStore(self, events, partitions: 1)
        return (directory, events)
    }

    func testSealedSegmentsGetSummariesAndFiltersSkipThem() async throws {
        let (directory, events) = try await makeStore()
        let partition = directory + "/topics/flips/0"
        let names = try FileManager.default.contentsOfDirectory(atPath: partition)
        let logs = names.filter { $0.hasSuffix(".log") }.sorted()
        let summaries = names.filter { $0.hasSuffix(".summary") }.sorted()
        XCTAssertGreaterThan(logs.count, 3)
        // Every sealed segment has one; the active one does not.
        XCTAssertEqual(summaries, logs.dropLast().map { $0.replacingOccurrences(of: ".log", with: ".summary") })
        let first = try XCTUnwrap(SegmentSummary.read(directory: partition, baseOffset: 0, fileIO: PosixFileIO()))
        XCTAssertTrue(first.mayContain(resource: "lonely/one"))
        XCTAssertTrue(first.mayContain(prefix: "lonely"))
        XCTAssertFalse(first.mayContain(resource: "lonely"))
        XCTAssertFalse(first.mayContain(prefix: "lone"))

        let query = PauliZQuery(windowMilliseconds: 10)
        let (result, statistics) = try PauliZReplay.run(directory: directory, topic: "flips", filter: .prefix("lonely")) { _ in query }
        XCTAssertEqual(statistics.segmentsSkipped, logs.count - 2, "all sealed segments but the first are skipped")
        let rows = try printed(result).rows
        // The horizon still comes from the skipped segments (their summaries).
        let expected = try runEngine(events.filter { $0.resource == "lonely/one" }, query, horizon: events.map(\.time).max()!)
        XCTAssertEqual(rows, expected.rows)
        XCTAssertEqual(result.horizon, events.map(\.time).max())
    }

    /// `lodestone check` holds summaries against the log: a summary that leaves out a
    /// resource (valid CRC, wrong content) is a fault, since replays would skip by it.
    func testCheckFindsASummaryThatDisagreesWithTheLog() async throws {
        let (directory, _) = try await makeStore()
        let clean = try StoreChecker.check(directory: directory, fileIO: PosixFileIO())
        XCTAssertEqual(clean.faultCount, 0, "\(clean.findings)")
        let partition = directory + "/topics/flips/0"
        let path = partition + "/00000000000000000000.summary"
        var summary = try XCTUnwrap(SegmentSummary.read(directory: partition, baseOffset: 0, fileIO: PosixFileIO()))
        summary.resources = summary.resources?.filter { $0 != "lonely/one" }
        summary.resourceCount -= 1
        try Data(summary.encoded()).write(to: URL(fileURLWithPath: path))
        let report = try StoreChecker.check(directory: directory, fileIO: PosixFileIO())
        XCTAssertEqual(report.faultCount, 1, "\(report.findings)")
        XCTAssertTrue(report.findings.contains { $0.isFault && $0.path == path && $0.message.contains("leaves out lonely/one") }, "\(report.findings)")
    }

    func testADamagedSummaryIsNotTrusted() async throws {
        let (directory, _) = try await makeStore()
        let partition = directory + "/topics/flips/0"
        let path = partition + "/00000000000000000000.summary"
        var bytes = try XCTUnwrap(FileManager.default.contents(atPath: path))
        bytes[bytes.count / 2] ^= 0x01
        try bytes.write(to: URL(fileURLWithPath: path))
        XCTAssertNil(SegmentSummary.read(directory: partition, baseOffset: 0, fileIO: PosixFileIO()))
        let (result, statistics) = try PauliZReplay.run(directory: directory, topic: "flips", filter: .exact("lonely/one")) { _ in PauliZQuery(windowMilliseconds: 10) }
        var count = 0
        try result.forEachRow { _ in count += 1 }
        XCTAssertEqual(count, 1, "the damaged summary's segment is read in full: the resource's row is there")
        XCTAssertGreaterThan(statistics.segmentsSkipped, 0)
    }
}

/// Writes `events` to a new flip topic, each resource to its partition (the key's), in batches of
/// up to 7 records (every other batch LZ4), segments of 8 KiB; returns the directory.
func makeFlipStore(_ test: XCTestCase, _ events: [FlipEvent], partitions: Int = 3, polarityMap: [String: Int8]? = nil, keepOpen: ((LogStore) async throws -> Void)? = nil) async throws -> String {
    let directory = NSTemporaryDirectory() + "lodestone-pauliz-" + UUID().uuidString
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: directory) }
    let pool = IOThreadPool(threadCount: 1)
    defer { pool.shutdown() }
    var configuration = StorageConfiguration()
    configuration.segmentBytes = 8192
    configuration.groupWriteBytesMax = 4096
    configuration.batchLimits = BatchLimits(batchBytesMax: 2048)
    configuration.preallocationBytes = 2048
    let store = try LogStore.open(directory: directory, environment: StorageEnvironment(fileIO: PosixFileIO(), configuration: configuration, executor: pool, logger: ReplayTests.quiet))
    try store.createTopic(name: "flips", partitionCount: partitions, kind: .flip, polarityMap: polarityMap)
    var pending: [Int: [FlipEvent]] = [:]
    var batchNumber = 0
    func flush(_ partition: Int) async throws {
        guard let batch = pending[partition], !batch.isEmpty else { return }
        batchNumber += 1
        let bytes = RecordBatch.make(values: batch.map { ($0.key, $0.encodedValue()) }, timestamp: 0, compression: batchNumber % 2 == 0 ? .lz4 : .none).encoded()
        let outcome = try await store.partition(topic: "flips", index: partition).append(bytes)
        guard case .committed = outcome else { throw TestFailure("append: \(outcome)") }
        pending[partition] = []
    }
    for event in events {
        let partition = Partitioner.partition(forKey: event.key, partitionCount: partitions)
        pending[partition, default: []].append(event)
        if pending[partition]!.count == 7 { try await flush(partition) }
    }
    for partition in 0..<partitions { try await flush(partition) }
    if let keepOpen { try await keepOpen(store) }
    try await store.close()
    return directory
}


/// The live state (one-minute windows, the topic's storms) fed batch by batch answers as
/// a replay of the same log does, at any point of the feed, for any range and filter; other
/// query shapes are not its to answer.
final class PauliZLiveTests: XCTestCase {
    func testLiveAnswersEqualReplaysAtEveryPointOfTheFeed() async throws {
        let events = stretched(seed: 21, count: 700, by: 7_000)
        let map: [String: Int8] = ["on": 1, "off": -1]
        let directory = try await makeFlipStore(self, events, partitions: 2, polarityMap: map)
        let storm = StormParameters(intervalMilliseconds: 60_000, enter: 3, exit: 1)
        let live = try PauliZLive(storm: storm, polarityMap: map)
        // The batches in an order a server could see them durable: partitions interleaved,
        // each in its log order.
        let ordered = try interleave(directory: directory)
        var fed: [FlipEvent] = []
        let byKey = Dictionary(grouping: events, by: { "\($0.resource)|\($0.epoch)|\($0.seq)" })
        for (index, batch) in ordered.enumerated() {
            try batch.withUnsafeBytes { raw in live.ingest(batch: raw, header: try RecordBatchHeader.read(raw)) }
            try batch.withUnsafeBytes { raw in
                try FlipRecords.forEach(batch: raw, header: try RecordBatchHeader.read(raw)) { fields in
                    let key = "\(String(decoding: fields.resource, as: UTF8.self))|\(fields.epoch)|\(fields.seq)"
                    fed.append(byKey[key]!.first!)
                }
            }
            guard index % 9 == 0 || index == ordered.count - 1 else { continue }
            for (from, to, filter) in [(nil, nil, ResourceFilter.all), (Int64(60_000), Int64(600_000), .prefix("a")), (nil, Int64(300_000), .exact("b"))] as [(Int64?, Int64?, ResourceFilter)] {
                let query = PauliZQuery(windowMilliseconds: 60_000, from: from, to: to, storm: storm, polarityMap: map)
                let answer = try XCTUnwrap(try live.answer(query, filter: filter))
                let (rows, storms) = try printed(answer)
                let kept = fed.filter { matches(filter, $0.resource) }
                let expected = try runEngine(kept, query, horizon: fed.map(\.time).max())
                XCTAssertEqual(rows, expected.rows, "after \(index + 1) batches, \(filter), \(String(describing: from))..<\(String(describing: to))")
                XCTAssertEqual(storms, expected.storms, "after \(index + 1) batches, \(filter)")
                if index == ordered.count - 1 && filter == .all {
                    XCTAssertGreaterThan(rows.count, 50)
                    XCTAssertGreaterThan(storms.count, 3, "the parameters should make storms to compare")
                }
            }
        }
        XCTAssertNil(try live.answer(PauliZQuery(windowMilliseconds: 120_000, storm: storm, polarityMap: map), filter: .all))
        XCTAssertNil(try live.answer(PauliZQuery(windowMilliseconds: 60_000, storm: StormParameters(), polarityMap: map), filter: .all))
    }

    /// Past its row limit the live state forgets its older windows: it then answers only
    /// queries from its oldest kept window on, and those as a replay would.
    func testForgettingOldWindowsKeepsRecentAnswersExact() async throws {
        let events = stretched(seed: 22, count: 600, by: 5_000)
        let directory = try await makeFlipStore(self, events, partitions: 2)
        let storm = StormParameters(intervalMilliseconds: 60_000, enter: 2, exit: 0)
        let live = try PauliZLive(storm: storm, polarityMap: [:], rowsMax: 40)
        for batch in try interleave(directory: directory) {
            try batch.withUnsafeBytes { raw in live.ingest(batch: raw, header: try RecordBatchHeader.read(raw)) }
        }
        XCTAssertFalse(live.hasOverflowed)
        let forgotten = try XCTUnwrap(live.completeFrom, "40 rows are far fewer than the traffic makes")
        XCTAssertNil(try live.answer(PauliZQuery(windowMilliseconds: 60_000, storm: storm), filter: .all), "no from: not the live state's to answer")
        XCTAssertNil(try live.answer(PauliZQuery(windowMilliseconds: 60_000, from: forgotten - 60_000, storm: storm), filter: .all))
        for from in [forgotten, forgotten + 120_000] {
            let query = PauliZQuery(windowMilliseconds: 60_000, from: from, storm: storm)
            let answer = try XCTUnwrap(try live.answer(query, filter: .all))
            let (rows, storms) = try printed(answer)
            let expected = try runEngine(events, query)
            XCTAssertFalse(expected.rows.isEmpty)
            XCTAssertEqual(rows, expected.rows, "from \(from)")
            XCTAssertEqual(storms, expected.storms, "from \(from)")
        }
    }

    /// Small traffic with its times multiplied, so one-minute windows hold several events.
    func stretched(seed: UInt64, count: Int, by factor: Int64) -> [FlipEvent] {
        var traffic = SmallTraffic(seed: seed)
        return traffic.events(count: count).map { event in
            var event = event
            event.time *= factor
            return event
        }
    }

    /// Batches of partition 0 and 1 alternated, each partition's in log order.
    func interleave(directory: String) throws -> [[UInt8]] {
        let reader = try DirectoryReader(directory: directory, fileIO: PosixFileIO())
        var lists: [[[UInt8]]] = []
        for partition in 0..<2 {
            let files = try reader.partitionFiles(topic: "flips", partition: partition)
            var list: [[UInt8]] = []
            for segment in files.segments { _ = try reader.forEachBatch(in: segment, of: files) { _, bytes in list.append(Array(bytes)) } }
            lists.append(list)
        }
        var result: [[UInt8]] = []
        var index = 0
        while result.count < lists[0].count + lists[1].count {
            for list in lists where index < list.count { result.append(list[index]) }
            index += 1
        }
        return result
    }

    func matches(_ filter: ResourceFilter, _ resource: String) -> Bool {
        var resource = resource
        return resource.withUTF8 { filter.matches(UnsafeRawBufferPointer($0)) }
    }
}

/// A failure of the test's own set-up (not of the code under test).
private struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
