@testable import LogServer
import Foundation
import LogFormat
import LogIO
import LogStorage
import Logging
import PauliZ
import PauliZReplay
import Synchronization
import XCTest

/// The server builds a flip topic's live Pauli-Z state while it already takes appends:
/// batches that become durable while the log is read, and after, are each fed once.
final class LiveBuildTests: XCTestCase {
    private let map: [String: Int8] = ["on": 1, "off": -1]
    private let pool = IOThreadPool(threadCount: 2)

    override func tearDown() {
        pool.shutdown()
    }

    /// `count` events of 12 resources, the `part`-th slice of one timeline.
    private func events(_ part: Int, count: Int) -> [FlipEvent] {
        (0..<count).map { i in
            let n = part * count + i
            let seq = Int64(n / 12 + 1)
            return FlipEvent(resource: "svc/r\(n % 12)", to: seq % 3 == 0 ? "on" : "off", actor: "a", reason: n % 5 == 0 ? "" : "why",
                             epoch: 1, seq: seq, time: 1_767_225_600_000 + Int64(n) * 7_000)
        }
    }

    private func openStore() throws -> LogStore {
        let directory = NSTemporaryDirectory() + "lodestone-live-build-" + UUID().uuidString
        addTeardownBlock { try? FileManager.default.removeItem(atPath: directory) }
        let store = try LogStore.open(directory: directory, environment: StorageEnvironment(fileIO: PosixFileIO(), executor: pool, logger: TestServer.quiet))
        try store.createTopic(name: "flips", partitionCount: 2, kind: .flip, polarityMap: map)
        return store
    }

    /// Appends `events` as one LZ4 batch per partition and waits until they are durable.
    private static func append(_ events: [FlipEvent], to store: LogStore) throws {
        let done = DispatchSemaphore(value: 0)
        let failure = Mutex<String?>(nil)
        Task {
            do {
                for partition in 0..<2 {
                    let mine = events.filter { Partitioner.partition(forKey: $0.key, partitionCount: 2) == partition }
                    guard !mine.isEmpty else { continue }
                    let bytes = RecordBatch.make(values: mine.map { ($0.key, $0.encodedValue()) }, timestamp: 0, compression: .lz4).encoded()
                    let outcome = try await store.partition(topic: "flips", index: partition).append(bytes)
                    guard case .committed = outcome else { throw TestFailure("append: \(outcome)") }
                }
            } catch {
                failure.withLock { $0 = "\(error)" }
            }
            done.signal()
        }
        done.wait()
        if let message = failure.withLock({ $0 }) { throw TestFailure(message) }
    }

    /// Waits (bounded) until `condition` holds.
    private func eventually(_ what: String, seconds: Double = 20, _ condition: () -> Bool) throws {
        let deadline = Date().addingTimeInterval(seconds)
        while !condition() {
            if Date() > deadline { throw TestFailure("timed out waiting: \(what)") }
            usleep(2_000)
        }
    }

    private static func lines(_ result: PauliZResult) throws -> [String] {
        var lines: [String] = []
        try result.forEachRow { row in
            lines.append(PauliZOutput.rowLine(.jsonl, keyName: "resource", key: result.name(of: row.key), row: row, windowMilliseconds: 60_000))
        }
        return lines + result.episodes.map { PauliZOutput.episodeLine(.jsonl, resource: result.name(of: $0.resource), episode: $0) }
    }

    private func query(_ store: LogStore) throws -> PauliZQuery {
        let storm = try XCTUnwrap(store.topic("flips")).configuration.storm
        return PauliZQuery(windowMilliseconds: 60_000, storm: StormParameters(intervalMilliseconds: storm.intervalMilliseconds, enter: storm.enter, exit: storm.exit), polarityMap: map)
    }

    /// The live answer once ingest has caught up with what is durable now, as lines.
    private func liveLines(_ live: LivePauliZ, _ store: LogStore) throws -> [String] {
        let query = try query(store)
        let answer = Mutex<Result<PauliZResult?, PauliZError>?>(nil)
        XCTAssertTrue(live.whenCaughtUp(topic: "flips", query: query) { state in
            answer.withLock { $0 = Result { () throws(PauliZError) in try state?.answer(query, filter: .all) } }
        })
        try eventually("a live answer") { answer.withLock { $0 != nil } }
        let result = try XCTUnwrap(try answer.withLock { $0 }!.get(), "answered from the live state, not handed to a replay")
        return try Self.lines(result)
    }

    /// The rows a replay of the durable log gives, and the events it read.
    private func replayedLines(_ store: LogStore) throws -> ([String], Int64) {
        let (replayed, statistics) = try PauliZServerReplay.run(topic: try XCTUnwrap(store.topic("flips")), query: try query(store), filter: .all)
        return (try Self.lines(replayed), statistics.events)
    }

    func testAppendsDuringAndAfterTheBuildAreCountedOnce() async throws {
        let store = try openStore()
        try Self.append(events(0, count: 120), to: store)
        let during = events(1, count: 120), beforeReady = events(2, count: 120), after = events(3, count: 120)
        let live = LivePauliZ(hooks: LivePauliZ.Hooks(
            // Durable before the ends are taken: in what is read, and in the feed.
            afterReset: { try! Self.append(during, to: store) },
            // Durable after the log was read: only the feed has them.
            beforeReady: { try! Self.append(beforeReady, to: store) }))
        live.start(store: store, logger: TestServer.quiet)
        try eventually("the state is ready") { live.state("flips") != nil }
        XCTAssertEqual(live.readyCount, 1)
        try Self.append(after, to: store)

        let (expected, events) = try replayedLines(store)
        XCTAssertEqual(events, 480)
        XCTAssertGreaterThan(expected.count, 40)
        XCTAssertEqual(try liveLines(live, store), expected)
        XCTAssertEqual(live.rebuildCount.load(ordering: .relaxed), 0)
        live.stop()
        try await store.close()
    }

    /// Ingest held up: the writers go on acknowledging (their feed drops what it cannot
    /// hold), and once ingest runs again the state is rebuilt from the log, exact.
    func testAFeedThatOverflowsNeverBlocksWritersAndTheStateIsRebuilt() async throws {
        let store = try openStore()
        try Self.append(events(0, count: 120), to: store)
        let gate = Gate()
        let live = LivePauliZ(feedBytesMax: 4096, hooks: LivePauliZ.Hooks(beforeIngest: { gate.pass() }))
        live.start(store: store, logger: TestServer.quiet)
        try eventually("the state is ready") { live.state("flips") != nil }
        gate.close()
        try eventually("ingest is held") { gate.waiting == 1 }
        for part in 1...8 { try Self.append(events(part, count: 120), to: store) }
        XCTAssertEqual(try XCTUnwrap(store.topic("flips")).partitions.map(\.offsets.durableEnd).reduce(0, +), 9 * 120, "every append was acknowledged durable while ingest was held")
        gate.open()
        try eventually("the state was rebuilt") { live.rebuildCount.load(ordering: .relaxed) == 1 && live.state("flips") != nil }

        let (expected, events) = try replayedLines(store)
        XCTAssertEqual(events, 9 * 120)
        XCTAssertEqual(try liveLines(live, store), expected)
        live.stop()
        try await store.close()
    }

    /// A live query answers only once ingest has reached the durable ends of the moment it
    /// came: what was acknowledged before it is in its answer.
    func testALiveQueryWaitsForIngestToReachWhatWasAcknowledged() async throws {
        let store = try openStore()
        try Self.append(events(0, count: 120), to: store)
        let gate = Gate()
        let live = LivePauliZ(waitMilliseconds: 600_000, hooks: LivePauliZ.Hooks(beforeIngest: { gate.pass() }))
        live.start(store: store, logger: TestServer.quiet)
        try eventually("the state is ready") { live.state("flips") != nil }
        gate.close()
        try eventually("ingest is held") { gate.waiting == 1 }
        try Self.append(events(1, count: 120), to: store)

        let query = try query(store)
        let answered = Mutex<[String]?>(nil)
        XCTAssertTrue(live.whenCaughtUp(topic: "flips", query: query) { state in
            let result = try! XCTUnwrap(state).answer(query, filter: .all)!
            answered.withLock { $0 = try! Self.lines(result) }
        })
        XCTAssertEqual(live.waitingCount, 1, "not answered while ingest lags the acknowledged appends")
        XCTAssertNil(answered.withLock { $0 })
        gate.open()
        try eventually("answered") { answered.withLock { $0 != nil } }
        XCTAssertEqual(live.waitingCount, 0)
        XCTAssertEqual(answered.withLock { $0 }, try replayedLines(store).0)
        live.stop()
        try await store.close()
    }

    /// A query that cannot wait any longer, or whose state is dropped, goes to a replay.
    func testWaitersPastTheirDeadlineOrDroppedGoToReplays() throws {
        let store = try openStore()
        let topic = LiveTopic(topic: try XCTUnwrap(store.topic("flips")), feedBytesMax: 1 << 20, wake: {})
        let live = try PauliZLive(storm: StormParameters(intervalMilliseconds: 60_000, enter: 5, exit: 2), polarityMap: map)
        topic.becomeReady(live, ends: [10, 20])
        let query = try query(store)
        let calls = Mutex<[String]>([])
        func record(_ name: String) -> @Sendable (PauliZLive?) -> Void { { state in calls.withLock { $0.append("\(name):\(state == nil ? "replay" : "live")") } } }
        guard case .now = topic.wait(for: [10, 20], query: query, deadline: 100, record("caught-up")) else { return XCTFail("answered at once") }
        guard case .waiting = topic.wait(for: [11, 20], query: query, deadline: 100, record("early")) else { return XCTFail("waits") }
        guard case .waiting = topic.wait(for: [30, 20], query: query, deadline: 500, record("late")) else { return XCTFail("waits") }
        guard case .notLive = topic.wait(for: [10, 20], query: PauliZQuery(windowMilliseconds: 3_600_000, storm: query.storm, polarityMap: map), deadline: 100, record("hourly")) else {
            return XCTFail("a query of another window is not the live state's")
        }
        let (ready, expired) = topic.advance(to: [12, 20], now: 200)
        XCTAssertEqual(ready.count, 1)
        XCTAssertEqual(expired.count, 0)
        XCTAssertEqual(ready.first?.ends, [11, 20])
        let (ready2, expired2) = topic.advance(to: [12, 21], now: 600)
        XCTAssertEqual(ready2.count, 0)
        XCTAssertEqual(expired2.map(\.ends), [[30, 20]])
        _ = topic.wait(for: [40, 40], query: query, deadline: 10_000, record("dropped"))
        XCTAssertEqual(topic.dropState(.building).count, 1)
        guard case .notLive = topic.wait(for: [0, 0], query: query, deadline: 10_000, record("building")) else { return XCTFail("no live answers while building") }
    }
}

/// Holds a thread at `pass()` while closed; counts the threads held.
final class Gate: @unchecked Sendable {
    private let condition = NSCondition()
    private var isOpen = true
    private var held = 0

    func close() { condition.withLock { isOpen = false } }

    func open() {
        condition.withLock {
            isOpen = true
            condition.broadcast()
        }
    }

    func pass() {
        condition.withLock {
            held += 1
            while !isOpen { condition.wait() }
            held -= 1
        }
    }

    var waiting: Int { condition.withLock { held } }
}

/// A failure of the test's own set-up (not of the code under test).
private struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
