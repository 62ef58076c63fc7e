import Foundation
import LogFormat
import LogIO
import LogStorage
import Logging
import XCTest

/// The built `lodestone` binary, run as a process, the way an operator runs it.
final class CheckCommandTests: XCTestCase {
    func run(_ arguments: [String]) throws -> ProcessRun { try Lodestone.run(arguments) }

    func makeStore() async throws -> String {
        let directory = NSTemporaryDirectory() + "lodestone-cli-" + UUID().uuidString
        addTeardownBlock { try? FileManager.default.removeItem(atPath: directory) }
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let pool = IOThreadPool(threadCount: 1)
        defer { pool.shutdown() }
        let store = try LogStore.open(directory: directory, environment: StorageEnvironment(fileIO: PosixFileIO(), configuration: StorageConfiguration(), clock: SystemWallClock(), executor: pool, logger: logger))
        try store.createTopic(name: "cli", partitionCount: 1, kind: .raw)
        for index in 0..<20 {
            let batch = RecordBatch.make(values: [(Array("k".utf8), Array("value \(index)".utf8))], timestamp: 0).encoded()
            _ = try await store.partition(topic: "cli", index: 0).append(batch)
        }
        try await store.close()
        return directory
    }

    func testCheckPassesOnAHealthyStore() async throws {
        let directory = try await makeStore()
        let result = try run(["check", "--data", directory])
        XCTAssertEqual(result.status, 0, result.output + result.error)
        XCTAssertTrue(result.output.contains("partition 0: 1 segment, 20 batches, 20 records, offsets 0 to 19"), result.output)
        XCTAssertTrue(result.output.hasSuffix("check: 1 topic, 1 partition, 0 faults, 0 notes\n"), result.output)
    }

    func testCheckExitsOneAndNamesFileAndByteOnCorruption() async throws {
        let directory = try await makeStore()
        let path = directory + "/topics/cli/0/00000000000000000000.log"
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        try handle.seek(toOffset: 200)
        handle.write(Data([0xEE]))
        try handle.close()
        let result = try run(["check", "--data", directory])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.output.contains("FAULT: \(path) byte "), result.output)
        XCTAssertTrue(result.output.contains("1 fault"), result.output)
    }

    /// Bytes after a clean shutdown's end: open will refuse the partition, and check says so.
    func testCheckSaysWhenTheNextOpenWillRefuse() async throws {
        let directory = try await makeStore()
        let path = directory + "/topics/cli/0/00000000000000000000.log"
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        try handle.seekToEnd()
        handle.write(Data([1, 2, 3, 4]))
        try handle.close()
        let result = try run(["check", "--data", directory])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.output.contains("FAULT: \(path)"), result.output)
        XCTAssertTrue(result.output.contains("the next open refuses the partition"), result.output)
    }

    func testCheckExitsTwoWhileTheDirectoryIsInUse() async throws {
        let directory = try await makeStore()
        let lock = try PosixFileIO().lockDirectory(directory)
        defer { lock.release() }
        let result = try run(["check", "--data", directory])
        XCTAssertEqual(result.status, 2)
        XCTAssertTrue(result.error.contains("in use by another process"), result.error)
        let missing = try run(["check", "--data", directory + "/nope"])
        XCTAssertEqual(missing.status, 2)
        XCTAssertTrue(missing.error.contains("does not exist"), missing.error)
    }

    func testInspectPrintsOneJSONLinePerBatchAndTheEnd() async throws {
        let directory = try await makeStore()
        let result = try run(["inspect", directory + "/topics/cli/0/00000000000000000000.log", "--records"])
        XCTAssertEqual(result.status, 0, result.error)
        let lines = result.output.split(separator: "\n")
        XCTAssertEqual(lines.count, 21)
        let first = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any]
        XCTAssertEqual(first?["baseOffset"] as? Int, 0)
        let records = first?["recordList"] as? [[String: Any]]
        XCTAssertEqual(records?.first?["value"] as? String, "value 0")
        let last = try JSONSerialization.jsonObject(with: Data(lines[20].utf8)) as? [String: Any]
        XCTAssertEqual(last?["end"] as? String, "clean")
        XCTAssertEqual(last?["batches"] as? Int, 20)
    }
}
