import Foundation
import LogIO
import Synchronization
import SystemPackage
import XCTest

final class PosixFileIOTests: XCTestCase {
    var directory = ""
    let io = PosixFileIO()

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "lodestone-io-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    func testWriteReadSizeTruncateSync() throws {
        let file = try io.open(directory + "/a", mode: .createNew)
        try file.writeAll(Array("hello world".utf8), at: 0)
        try file.writeAll(Array("W".utf8), at: 6)
        try file.dataSync()
        XCTAssertEqual(try file.size(), 11)
        XCTAssertEqual(String(decoding: try file.read(count: 100, at: 0), as: UTF8.self), "hello World")
        XCTAssertEqual(String(decoding: try file.read(count: 3, at: 8), as: UTF8.self), "rld")
        XCTAssertEqual(try file.read(count: 10, at: 50), [], "reading past the end gives nothing")
        try file.truncate(to: 5)
        XCTAssertEqual(try file.size(), 5)
        try file.close()
    }

    func testOpenModesAndErrorsCarryErrnoAndPath() throws {
        let path = directory + "/b"
        XCTAssertThrowsError(try io.open(path, mode: .readOnly)) { error in
            let ioError = error as? IOError
            XCTAssertEqual(ioError?.errno, .noSuchFileOrDirectory)
            XCTAssertEqual(ioError?.path, path)
            XCTAssertEqual(ioError?.operation, "open")
        }
        try io.open(path, mode: .createNew).close()
        XCTAssertThrowsError(try io.open(path, mode: .createNew)) { XCTAssertEqual(($0 as? IOError)?.errno, .fileExists) }
        let reader = try io.open(path, mode: .readOnly)
        XCTAssertThrowsError(try reader.writeAll([1], at: 0)) { XCTAssertEqual(($0 as? IOError)?.errno, .badFileDescriptor) }
        try reader.close()
        try io.open(path, mode: .createOrOpen).close()
    }

    func testDirectoryOperations() throws {
        try io.makeDirectory(directory + "/sub")
        try io.makeDirectory(directory + "/sub")  // exists: fine
        try io.open(directory + "/sub/x", mode: .createNew).close()
        try io.rename(from: directory + "/sub/x", to: directory + "/sub/y")
        try io.syncDirectory(directory + "/sub")
        XCTAssertEqual(try io.list(directory + "/sub"), ["y"])
        XCTAssertTrue(io.exists(directory + "/sub/y"))
        XCTAssertFalse(io.exists(directory + "/sub/x"))
        try io.remove(directory + "/sub/y")
        XCTAssertEqual(try io.list(directory + "/sub"), [])
        XCTAssertThrowsError(try io.remove(directory + "/sub/y")) { XCTAssertEqual(($0 as? IOError)?.errno, .noSuchFileOrDirectory) }
    }

    func testAtomicWriteReplacesWholeFile() throws {
        let path = directory + "/config"
        try io.writeFileAtomically(path, Array(repeating: 1, count: 1000))
        try io.writeFileAtomically(path, [2, 3])
        XCTAssertEqual(try io.readWholeFile(path, bytesMax: 100), [2, 3])
        XCTAssertFalse(io.exists(path + ".tmp"))
        XCTAssertThrowsError(try io.readWholeFile(path, bytesMax: 1)) { XCTAssertEqual(($0 as? IOError)?.errno, .fileTooLarge) }
    }

    func testDirectoryLockIsExclusiveUntilReleased() throws {
        let first = try io.lockDirectory(directory)
        XCTAssertThrowsError(try io.lockDirectory(directory)) { error in
            XCTAssertEqual((error as? IOError)?.errno, .wouldBlock)
        }
        first.release()
        let second = try io.lockDirectory(directory)
        second.release()
    }

    /// A file that writes one byte per call, to drive `writeAll` through short writes.
    final class OneByteFile: StorageFile, @unchecked Sendable {
        let path = "one-byte"
        var bytes: [UInt8] = []
        func read(into buffer: UnsafeMutableRawBufferPointer, at position: Int64) throws(IOError) -> Int { 0 }
        func write(_ data: UnsafeRawBufferPointer, at position: Int64) throws(IOError) -> Int {
            if bytes.count <= Int(position) { bytes.append(contentsOf: repeatElement(0, count: Int(position) + 1 - bytes.count)) }
            bytes[Int(position)] = data[0]
            return 1
        }
        func dataSync() throws(IOError) {}
        func truncate(to size: Int64) throws(IOError) {}
        func size() throws(IOError) -> Int64 { Int64(bytes.count) }
        func close() throws(IOError) {}
    }

    func testWriteAllContinuesAfterShortWrites() throws {
        let file = OneByteFile()
        try file.writeAll(Array("short writes".utf8), at: 0)
        XCTAssertEqual(String(decoding: file.bytes, as: UTF8.self), "short writes")
    }

    func testThreadPoolRunsEveryJobOffTheCallingThreadAndShutsDown() {
        let pool = IOThreadPool(threadCount: 3)
        let counter = Counter()
        let done = expectation(description: "jobs")
        done.expectedFulfillmentCount = 500
        for _ in 0..<500 {
            pool.execute {
                counter.increment()
                done.fulfill()
            }
        }
        wait(for: [done], timeout: 10)
        pool.shutdown()
        XCTAssertEqual(counter.value, 500)
    }

    final class Counter: @unchecked Sendable {
        private let lock = NSLock()
        private var count = 0
        func increment() { lock.withLock { count += 1 } }
        var value: Int { lock.withLock { count } }
    }
}

/// The two shapes of pool: the writers' (grows with the work, never refuses) and the
/// query pool (fixed, lower priority, refuses past its queue).
final class ThreadPoolShapeTests: XCTestCase {
    func testTheWritersPoolGrowsToItsMaximumSoNoWriterWaitsForAThread() throws {
        let pool = IOThreadPool(writersMax: 4, idleMilliseconds: 50)
        let release = DispatchSemaphore(value: 0)
        let started = DispatchSemaphore(value: 0)
        for _ in 0..<6 {
            pool.execute {
                started.signal()
                release.wait()
            }
        }
        for _ in 0..<4 { XCTAssertEqual(started.wait(timeout: .now() + 10), .success) }
        XCTAssertEqual(pool.load.threads, 4)
        XCTAssertEqual(pool.load.running, 4)
        XCTAssertEqual(pool.load.queued, 2)
        for _ in 0..<6 { release.signal() }
        for _ in 0..<2 { XCTAssertEqual(started.wait(timeout: .now() + 10), .success) }
        // Idle threads end, down to one.
        let deadline = Date().addingTimeInterval(10)
        while pool.load.threads > 1 && Date() < deadline { usleep(5_000) }
        XCTAssertEqual(pool.load.threads, 1)
        pool.shutdown()
        XCTAssertEqual(pool.load.threads, 0)
    }

    func testTheQueryPoolRefusesPastItsQueueAndRunsNiced() throws {
        let pool = IOThreadPool(threadCount: 1, queuedMax: 2, niceness: 10, name: "test-query")
        let release = DispatchSemaphore(value: 0)
        let started = DispatchSemaphore(value: 0)
        let niceness = Atomic<Int32>(-100)
        XCTAssertTrue(pool.submit {
            niceness.store(currentThreadNiceness(), ordering: .relaxed)
            started.signal()
            release.wait()
        })
        XCTAssertEqual(started.wait(timeout: .now() + 10), .success)
        XCTAssertTrue(pool.submit {})
        XCTAssertTrue(pool.submit {})
        XCTAssertFalse(pool.submit {}, "two wait already")
        XCTAssertEqual(pool.load.refusedTotal, 1)
        XCTAssertEqual(niceness.load(ordering: .relaxed), 10)
        XCTAssertEqual(currentThreadNiceness(), 0, "the caller's own priority is untouched")
        release.signal()
        XCTAssertEqual(pool.shutdown(droppingQueued: false), 0)
        XCTAssertFalse(pool.submit {}, "a stopped pool takes nothing")
    }

    func testShutdownCanDropJobsNoThreadStarted() {
        let pool = IOThreadPool(threadCount: 1, queuedMax: 10, niceness: 0, name: "test-drop")
        let gate = DispatchSemaphore(value: 0)
        let ran = Atomic<Int>(0)
        let started = DispatchSemaphore(value: 0)
        XCTAssertTrue(pool.submit { started.signal(); gate.wait(); ran.add(1, ordering: .relaxed) })
        XCTAssertEqual(started.wait(timeout: .now() + 10), .success)
        for _ in 0..<5 { XCTAssertTrue(pool.submit { ran.add(1, ordering: .relaxed) }) }
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.05) { gate.signal() }
        XCTAssertEqual(pool.shutdown(droppingQueued: true), 5)
        XCTAssertEqual(ran.load(ordering: .relaxed), 1)
    }
}
