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
                    guard case .committed = outcome else { throw PauliZError("append: \(outcome)") }
                }
            } catch {
                failure.withLock { $0 = "\(error)" }
            }
            done.signal()
        }
        done.wait()
        if let message = failure.withLock({ $0 }) { throw PauliZError(message) }
    }

    /// Runs a build on a thread of its own (its hooks block while they append).
    private func build(_ live: LivePauliZ, _ store: LogStore) async throws {
        let topic = try XCTUnwrap(store.topic("flips"))
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async {
                live.follow(topic, logger: TestServer.quiet)
                continuation.resume()
            }
        }
    }

    private func lines(_ result: PauliZResult) throws -> [String] {
        var lines: [String] = []
        try result.forEachRow { row in
            lines.append(PauliZOutput.rowLine(.jsonl, keyName: "resource", key: result.name(of: row.key), row: row, windowMilliseconds: 60_000))
        }
        return lines + result.episodes.map { PauliZOutput.episodeLine(.jsonl, resource: result.name(of: $0.resource), episode: $0) }
    }

    func testAppendsDuringAndAfterTheBuildAreCountedOnce() async throws {
        let store = try openStore()
        try Self.append(events(0, count: 120), to: store)
        let during = events(1, count: 120), beforeCatchUp = events(2, count: 120), after = events(3, count: 120)
        let live = LivePauliZ(hooks: LivePauliZ.BuildHooks(
            // Durable before the log is read: in what is read, and kept by the observers.
            afterObserving: { try! Self.append(during, to: store) },
            // Durable after the log was read: only the observers have them.
            beforeCatchingUp: { try! Self.append(beforeCatchUp, to: store) }))
        try await build(live, store)
        let state = try XCTUnwrap(live.state("flips"), "the state is ready")
        XCTAssertEqual(live.readyCount, 1)
        try Self.append(after, to: store)

        let topic = try XCTUnwrap(store.topic("flips"))
        let storm = StormParameters(intervalMilliseconds: topic.configuration.storm.intervalMilliseconds, enter: topic.configuration.storm.enter, exit: topic.configuration.storm.exit)
        let query = PauliZQuery(windowMilliseconds: 60_000, storm: storm, polarityMap: map)
        let answer = try XCTUnwrap(try state.answer(query, filter: .all))
        let (replayed, statistics) = try PauliZServerReplay.run(topic: topic, query: query, filter: .all)
        XCTAssertEqual(statistics.events, 480)
        let expected = try lines(replayed)
        XCTAssertGreaterThan(expected.count, 40)
        XCTAssertEqual(try lines(answer), expected)
        try await store.close()
    }

    func testTooMuchAppendedDuringTheBuildGivesUpTheState() async throws {
        let store = try openStore()
        try Self.append(events(0, count: 60), to: store)
        let during = events(1, count: 60)
        let live = LivePauliZ(pendingBytesMax: 64, hooks: LivePauliZ.BuildHooks(afterObserving: { try! Self.append(during, to: store) }))
        try await build(live, store)
        XCTAssertNil(live.state("flips"), "replays answer instead")
        XCTAssertEqual(live.readyCount, 0)
        // The partitions no longer feed it; appends go on.
        try Self.append(events(2, count: 60), to: store)
        try await store.close()
    }
}
