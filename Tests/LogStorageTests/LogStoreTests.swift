import Foundation
import LogFormat
import LogIO
import LogSimulation
@testable import LogStorage
import XCTest

final class LogStoreTests: XCTestCase {
    func openStore(_ directory: String, pool: IOThreadPool) throws -> LogStore {
        try LogStore.open(
            directory: directory, environment: StorageEnvironment(fileIO: PosixFileIO(), configuration: smallConfiguration(), clock: SystemWallClock(), executor: pool, logger: quietLogger))
    }

    func testTopicsPersistAndKeysRouteByMurmur2() async throws {
        let directory = try temporaryDirectory(self) + "/data"
        let pool = IOThreadPool(threadCount: 2)
        defer { pool.shutdown() }
        var store = try openStore(directory, pool: pool)
        let topic = try store.createTopic(name: "prod/flips", partitionCount: 12, kind: .flip)
        XCTAssertEqual(topic.partition(forKey: Array("1".utf8)), 3, "Kafka's murmur2 rule")
        XCTAssertEqual(topic.partition(forKey: Array("prod/eu-1/payments/leader".utf8)), 3)
        try store.createTopic(name: "raw.events_v2", partitionCount: 1, kind: .raw)
        let partition = try store.partition(topic: "prod/flips", index: 3)
        guard case .refused(let refusals) = try await partition.append(makeBatch("x", key: "1")) else {
            return XCTFail("a value that is not a flip event must be refused in a flip topic")
        }
        XCTAssertEqual(refusals.map(\.reason), [.invalid])
        XCTAssertTrue(refusals[0].message.hasPrefix("value "), "the refusal names the field: \(refusals[0].message)")
        let event = FlipEvent(resource: "1", to: "on", epoch: 1, seq: 1, time: 5)
        let flip = RecordBatch.make(values: [(event.key, event.encodedValue())], timestamp: 0).encoded()
        _ = try await partition.append(flip).committed()
        try await store.close()
        XCTAssertTrue(FileManager.default.fileExists(atPath: directory + "/topics/prod%2Fflips/topic.config"))

        store = try openStore(directory, pool: pool)
        XCTAssertEqual(store.topicConfigurations.map(\.name), ["prod/flips", "raw.events_v2"])
        XCTAssertEqual(store.topic("prod/flips")?.configuration.kind, .flip)
        XCTAssertEqual(store.topic("prod/flips")?.partitions.count, 12)
        XCTAssertEqual(try store.partition(topic: "prod/flips", index: 3).offsets.next, 1)
        XCTAssertThrowsError(try store.partition(topic: "prod/flips", index: 12)) { XCTAssertEqual(($0 as? StorageError)?.code, .notFound) }
        XCTAssertThrowsError(try store.partition(topic: "nope", index: 0)) { XCTAssertEqual(($0 as? StorageError)?.code, .notFound) }
        try await store.close()
    }

    func testBadTopicNamesAndCountsAreRefused() async throws {
        let directory = try temporaryDirectory(self) + "/data"
        let pool = IOThreadPool(threadCount: 1)
        defer { pool.shutdown() }
        let store = try openStore(directory, pool: pool)
        for name in ["", "/a", "a/", "a//b", "a/../b", "..", ".", "sp ace", "pct%2F", String(repeating: "x", count: 250), "ü"] {
            XCTAssertThrowsError(try store.createTopic(name: name, partitionCount: 1, kind: .raw), name) { error in
                XCTAssertEqual((error as? StorageError)?.code, .invalidArgument, name)
            }
        }
        XCTAssertThrowsError(try store.createTopic(name: "ok", partitionCount: 0, kind: .raw))
        XCTAssertThrowsError(try store.createTopic(name: "ok", partitionCount: Limits.topicPartitionCountMax + 1, kind: .raw))
        try store.createTopic(name: "ok", partitionCount: 1, kind: .raw)
        XCTAssertThrowsError(try store.createTopic(name: "ok", partitionCount: 1, kind: .raw)) { error in
            XCTAssertEqual((error as? StorageError)?.code, .alreadyExists)
        }
        try await store.close()
    }

    func testASecondOpenOfTheSameDirectoryIsRefused() async throws {
        let directory = try temporaryDirectory(self) + "/data"
        let pool = IOThreadPool(threadCount: 1)
        defer { pool.shutdown() }
        let store = try openStore(directory, pool: pool)
        XCTAssertThrowsError(try openStore(directory, pool: pool)) { error in
            XCTAssertEqual((error as? StorageError)?.code, .locked)
            XCTAssertTrue((error as? StorageError)?.message.contains("in use by another process") ?? false)
        }
        XCTAssertThrowsError(try StoreChecker.check(directory: directory, fileIO: PosixFileIO())) { error in
            XCTAssertEqual((error as? StorageError)?.code, .locked, "an offline reader cannot read behind a server's back")
        }
        try await store.close()
        let again = try openStore(directory, pool: pool)
        try await again.close()
    }

    /// A crash in the middle of creating a topic leaves `NAME.creating`, never a half topic.
    func testInterruptedTopicCreationLeavesNoTopic() throws {
        let disk = SimulatedDisk(seed: 8)
        let executor = ManualExecutor()
        let clock = SimulatedClock()
        func open() throws -> LogStore {
            try LogStore.open(directory: "/data", environment: StorageEnvironment(fileIO: disk, configuration: smallConfiguration(), clock: clock, executor: executor, logger: quietLogger))
        }
        var store = try open()
        disk.inject(.freeze(afterOperations: 6))
        XCTAssertThrowsError(try store.createTopic(name: "half", partitionCount: 4, kind: .raw))
        disk.crash(.powerLoss)
        store = try open()
        XCTAssertNil(store.topic("half"))
        try store.createTopic(name: "half", partitionCount: 4, kind: .raw)
        XCTAssertEqual(store.topic("half")?.partitions.count, 4)
        XCTAssertFalse(disk.exists("/data/topics/half.creating"))
    }

    func testCorruptTopicConfigurationIsRefusedNamingTheFile() async throws {
        let directory = try temporaryDirectory(self) + "/data"
        let pool = IOThreadPool(threadCount: 1)
        defer { pool.shutdown() }
        let store = try openStore(directory, pool: pool)
        try store.createTopic(name: "t", partitionCount: 1, kind: .raw)
        try await store.close()
        let path = directory + "/topics/t/topic.config"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[20] ^= 0x01
        try bytes.write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try openStore(directory, pool: pool)) { error in
            XCTAssertEqual((error as? StorageError)?.code, .corruption)
            XCTAssertTrue((error as? StorageError)?.message.contains(path) ?? false, "\(error)")
        }
    }
}

final class StoreCheckerTests: XCTestCase {
    func makeStore(_ directory: String, events: Int = 200) async throws {
        let pool = IOThreadPool(threadCount: 1)
        defer { pool.shutdown() }
        let store = try LogStore.open(
            directory: directory, environment: StorageEnvironment(fileIO: PosixFileIO(), configuration: smallConfiguration(), clock: SystemWallClock(), executor: pool, logger: quietLogger))
        try store.createTopic(name: "events", partitionCount: 2, kind: .raw)
        for index in 0..<events {
            _ = try await store.partition(topic: "events", index: index % 2).append(makeBatch("event \(index)"))
        }
        try await store.close()
    }

    func segment(_ directory: String, partition: Int = 0, base: Int64 = 0) -> String {
        "\(directory)/topics/events/\(partition)/\(SegmentFileName.name(baseOffset: base, kind: .log))"
    }

    func testHealthyStoreHasNoFindings() async throws {
        let directory = try temporaryDirectory(self) + "/data"
        try await makeStore(directory)
        let report = try StoreChecker.check(directory: directory, fileIO: PosixFileIO())
        XCTAssertEqual(report.findings, [])
        XCTAssertEqual(report.partitions.map(\.batchCount), [100, 100])
        XCTAssertEqual(report.partitions.map(\.nextOffset), [100, 100])
        XCTAssertEqual(report.partitions.map(\.cleanShutdown), [true, true])
    }

    func testCorruptionIsAFaultNamingFileAndByte() async throws {
        let directory = try temporaryDirectory(self) + "/data"
        try await makeStore(directory)
        let path = segment(directory)
        let content = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        var batchStart = 0
        while true {
            let length = content[(batchStart + 8)..<(batchStart + 12)].reduce(0) { ($0 << 8) | Int($1) }
            if batchStart + 12 + length > 1000 { break }
            batchStart += 12 + length
        }
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        try handle.seek(toOffset: 1000)
        let original = try XCTUnwrap(handle.readData(ofLength: 1))
        try handle.seek(toOffset: 1000)
        handle.write(Data([original[0] ^ 0x20]))
        try handle.close()
        let report = try StoreChecker.check(directory: directory, fileIO: PosixFileIO())
        XCTAssertEqual(report.faultCount, 1)
        let fault = try XCTUnwrap(report.findings.first)
        XCTAssertEqual(fault.path, path)
        XCTAssertEqual(fault.position, Int64(batchStart), "the batch holding the byte")
    }

    func testTornTailAfterAnUncleanStopIsANoteNotAFault() async throws {
        let directory = try temporaryDirectory(self) + "/data"
        try await makeStore(directory)
        // Make the stop unclean and leave half a batch at the end, as a crash would.
        let statePath = "\(directory)/topics/events/1/partition.state"
        try PosixFileIO().writeFileAtomically(statePath, PartitionStateFile(clean: false, groupWriteBytesMax: 4096).encoded())
        let base = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: "\(directory)/topics/events/1").filter { $0.hasSuffix(".log") }.sorted().last)
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: "\(directory)/topics/events/1/\(base)"))
        try handle.seekToEnd()
        handle.write(Data(makeBatch("half").prefix(40)))
        try handle.close()
        let report = try StoreChecker.check(directory: directory, fileIO: PosixFileIO())
        XCTAssertEqual(report.faultCount, 0)
        XCTAssertEqual(report.findings.count, 1)
        XCTAssertTrue(report.findings[0].message.hasPrefix("torn tail of 40 bytes"), report.findings[0].message)
    }

    func testCheckReadsTheProducerRegistryAndSnapshots() async throws {
        let directory = try temporaryDirectory(self) + "/data"
        try await makeStore(directory)
        let pool = IOThreadPool(threadCount: 1)
        defer { pool.shutdown() }
        let store = try LogStore.open(directory: directory, environment: StorageEnvironment(fileIO: PosixFileIO(), configuration: smallConfiguration(), executor: pool, logger: quietLogger))
        _ = try await store.initializeProducer(name: "one")
        _ = try await store.initializeProducer(name: "two")
        try await store.close()
        XCTAssertEqual(try StoreChecker.check(directory: directory, fileIO: PosixFileIO()).findings, [])
        let snapshot = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: "\(directory)/topics/events/0").first { $0.hasSuffix(".snapshot") })
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: "\(directory)/topics/events/0/\(snapshot)"))
        var report = try StoreChecker.check(directory: directory, fileIO: PosixFileIO())
        XCTAssertEqual(report.faultCount, 0, "a snapshot is derived: unreadable is a note")
        XCTAssertEqual(report.findings.count, 1)
        let registry = "\(directory)/producers.registry"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: registry))
        bytes[20] ^= 0x04
        try bytes.write(to: URL(fileURLWithPath: registry))
        report = try StoreChecker.check(directory: directory, fileIO: PosixFileIO())
        XCTAssertEqual(report.faultCount, 1, "the registry is source of truth: damage is a fault")
        XCTAssertEqual(report.findings.first { $0.isFault }?.path, registry)
    }

    func testIndexThatDisagreesWithTheLogIsAFault() async throws {
        let directory = try temporaryDirectory(self) + "/data"
        try await makeStore(directory)
        let indexPath = segment(directory).replacingOccurrences(of: ".log", with: ".index")
        let bytes = try PosixFileIO().readWholeFile(indexPath, bytesMax: 1 << 20)
        var decoded = try IndexFile.decodeOffsetIndex(bytes)
        XCTAssertFalse(decoded.entries.isEmpty)
        decoded.entries[0].position += 1
        try PosixFileIO().writeFileAtomically(indexPath, IndexFile.encode(offsetEntries: decoded.entries, coverage: decoded.coverage))
        let report = try StoreChecker.check(directory: directory, fileIO: PosixFileIO())
        XCTAssertEqual(report.faultCount, 1)
        XCTAssertTrue(report.findings[0].message.contains("not a batch boundary"), report.findings[0].message)
    }
}
