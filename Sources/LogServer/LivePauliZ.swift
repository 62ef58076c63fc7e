import Glibc
import LogFormat
import LogIO
import LogStorage
import Logging
import PauliZ
import PauliZReplay
import Synchronization

/// The server's live Pauli-Z state: one `PauliZLive` per flip topic, kept off the commit
/// path (Docs/design.md, "Threads").
///
/// - Each flip topic's partitions hand every durable batch to the topic's
///   `DurableBatchFeed`, which never makes a writer wait; the writer acknowledges at once.
/// - One **ingest thread** drains the feeds into the states, and records per partition the
///   end of what it has ingested.
/// - One **build thread** (at a lower priority) builds a state from the durable log: at
///   start, for a topic created later, and whenever a feed overflowed (the ingest thread
///   fell behind by more than `feedBytesMax`): then the state is dropped, replays answer,
///   and the state is rebuilt (counted, logged; repeated overflows back off up to a minute).
///   A build resets the feed, then takes each partition's durable end, reads the log up
///   to there, and hands the state to the ingest thread, which skips the fed batches that
///   lie below those ends (they were in what was read): nothing is lost or counted twice.
/// - "Acknowledged means visible" holds for live answers: a query records each
///   partition's durable end when it arrives and is answered once ingest has reached all
///   of them (at once when it has). A query still waiting after `waitMilliseconds`, or when
///   the state is dropped, is answered by a replay instead. The ingest thread checks the
///   deadlines on each round and sleeps at most 100 ms between rounds, so an idle topic's
///   wait ends at most that long after its deadline (a busy round delays it by its work).
final class LivePauliZ: Sendable {
    /// Points where tests act (each on the thread named).
    struct Hooks: Sendable {
        /// Build thread, after the feed was reset and before the durable ends are taken.
        var afterReset: (@Sendable () -> Void)?
        /// Build thread, after the log was read and before the state is handed over.
        var beforeReady: (@Sendable () -> Void)?
        /// Ingest thread, before each round over the topics.
        var beforeIngest: (@Sendable () -> Void)?
    }

    let rowsMax: Int
    let feedBytesMax: Int
    let waitMilliseconds: Int
    let hooks: Hooks
    private let topics = Mutex<[String: LiveTopic]>([:])
    private let builds = Mutex<[(topic: LiveTopic, notBefore: UInt64)]>([])
    private let ingestSignal = ThreadSignal()
    private let buildSignal = ThreadSignal()
    private let stopping = Atomic<Bool>(false)
    private let started = Atomic<Bool>(false)
    private let threadsRunning = Atomic<Int>(0)
    private let logger: Mutex<Logger>
    /// States dropped because their feed overflowed, and live queries that waited too long.
    let rebuildCount = Atomic<Int>(0)
    let waitExpiredCount = Atomic<Int>(0)

    init(rowsMax: Int = PauliZLive.rowsMaxDefault, feedBytesMax: Int = Limits.paulizLiveFeedBytesMax,
         waitMilliseconds: Int = 5_000, hooks: Hooks = Hooks(), logger: Logger = Logger(label: "lodestone")) {
        self.rowsMax = rowsMax
        self.feedBytesMax = feedBytesMax
        self.waitMilliseconds = waitMilliseconds
        self.hooks = hooks
        self.logger = Mutex(logger)
    }

    private var log: Logger { logger.withLock { $0 } }

    /// Topics whose live state answers; topics whose state is being built.
    var readyCount: Int { topics.withLock { $0.values.filter(\.isReady).count } }
    var buildingCount: Int { topics.withLock { $0.values.filter(\.isBuilding).count } }

    /// The topic's live state when it answers (tests).
    func state(_ topic: String) -> PauliZLive? { topics.withLock { $0[topic] }?.readyState }

    // MARK: Threads

    /// Starts the ingest and build threads and queues a build of every flip topic; returns
    /// at once (queries are replayed until a topic's state is ready).
    func start(store: LogStore, logger: Logger) {
        self.logger.withLock { $0 = logger }
        guard !started.exchange(true, ordering: .relaxed) else { return }
        threadsRunning.add(2, ordering: .relaxed)
        startDetachedThread(name: "lodestone-live") { [self] in
            ingestLoop()
            threadsRunning.subtract(1, ordering: .releasing)
        }
        startDetachedThread(name: "lodestone-build", niceness: 10) { [self] in
            buildLoop()
            threadsRunning.subtract(1, ordering: .releasing)
        }
        for configuration in store.topicConfigurations where configuration.kind == .flip {
            if let topic = store.topic(configuration.name) { follow(topic) }
        }
    }

    /// Follows a flip topic: its partitions feed it from now on, and its state is built.
    func follow(_ topic: LogStore.Topic) {
        let live = LiveTopic(topic: topic, feedBytesMax: feedBytesMax, wake: { [ingestSignal] in ingestSignal.signal() })
        // `LiveTopic` wakes ingest only when a query waits or enough is queued; otherwise
        // the ingest thread's own rounds (at most 100 ms apart) take the batches.
        let added = topics.withLock { topics -> Bool in
            if topics[topic.configuration.name] != nil { return false }
            topics[topic.configuration.name] = live
            return true
        }
        guard added else { return }
        for partition in topic.partitions { partition.feedDurableBatches(to: live.feed) }
        queueBuild(live, afterMilliseconds: 0)
    }

    /// Ends both threads and waits for them (a build stops between two batches); queries
    /// still waiting are answered by replays. The store is about to close.
    func stop() {
        stopping.store(true, ordering: .relaxed)
        ingestSignal.signal()
        buildSignal.signal()
        while threadsRunning.load(ordering: .acquiring) > 0 { usleep(1_000) }
        for topic in topics.withLock({ Array($0.values) }) {
            for partition in topic.topic.partitions { partition.feedDurableBatches(to: nil) }
            for waiter in topic.dropState(.building) { waiter.run(nil) }
        }
    }

    private func queueBuild(_ topic: LiveTopic, afterMilliseconds delay: UInt64) {
        builds.withLock { $0.append((topic, MonotonicClock.nanoseconds() + delay * 1_000_000)) }
        buildSignal.signal()
    }

    private func buildLoop() {
        while !stopping.load(ordering: .relaxed) {
            let now = MonotonicClock.nanoseconds()
            let next = builds.withLock { builds -> LiveTopic? in
                guard let index = builds.firstIndex(where: { $0.notBefore <= now }) else { return nil }
                return builds.remove(at: index).topic
            }
            if let next { build(next) } else { buildSignal.wait(milliseconds: 200) }
        }
    }

    private func ingestLoop() {
        while !stopping.load(ordering: .relaxed) {
            hooks.beforeIngest?()
            for topic in topics.withLock({ Array($0.values) }) {
                if stopping.load(ordering: .relaxed) { return }
                ingest(topic)
            }
            ingestSignal.wait(milliseconds: 100)
        }
    }

    // MARK: Building

    /// Builds a topic's state from its durable log (see the type's comment). A log that
    /// cannot be read leaves the topic to replays, saying why.
    func build(_ topic: LiveTopic) {
        let configuration = topic.topic.configuration
        let defaults = PauliZReplay.topicDefaults(configuration)
        let started = ContinuousClock.now
        let live: PauliZLive
        do {
            live = try PauliZLive(storm: defaults.storm, polarityMap: defaults.polarityMap, rowsMax: rowsMax)
        } catch {
            topic.fail()
            return log.warning("no live Pauli-Z state; replays answer its queries", metadata: ["topic": "\(configuration.name)", "error": "\(error)"])
        }
        topic.feed.reset()
        hooks.afterReset?()
        // Every batch offered before the reset is durable, so below these ends.
        let ends = topic.topic.partitions.map(\.offsets.durableEnd)
        var events: Int64 = 0
        do {
            for (index, partition) in topic.topic.partitions.enumerated() {
                try PauliZServerReplay.forEachBatch(of: partition, from: partition.offsets.start, to: ends[index]) { header, batch in
                    if self.stopping.load(ordering: .relaxed) { throw BuildStopped() }
                    live.ingest(batch: batch, header: header)
                    events += Int64(header.recordCount)
                }
            }
        } catch is BuildStopped {
            return
        } catch {
            topic.fail()
            return log.warning("no live Pauli-Z state: the log could not be read; replays answer its queries", metadata: [
                "topic": "\(configuration.name)", "error": "\(error)",
            ])
        }
        hooks.beforeReady?()
        topic.becomeReady(live, ends: ends)
        ingestSignal.signal()
        let elapsed = (ContinuousClock.now - started).components
        log.info("live Pauli-Z state ready", metadata: [
            "topic": "\(configuration.name)", "events": "\(events)",
            "milliseconds": "\(elapsed.seconds * 1000 + elapsed.attoseconds / 1_000_000_000_000_000)",
        ])
    }

    // MARK: Ingesting

    /// One round for one topic (ingest thread): drains its feed into its state, or, when
    /// the feed overflowed, drops the state and queues a rebuild; then answers the queries
    /// whose durable ends are reached, and hands those that waited too long to replays.
    private func ingest(_ topic: LiveTopic) {
        guard let (live, ends) = topic.readyStateAndEnds else { return }
        let taken = topic.feed.take()
        if taken.overflowed {
            let rebuilds = rebuildCount.wrappingAdd(1, ordering: .relaxed).newValue
            let consecutive = topic.noteOverflow()
            for waiter in topic.dropState(.building) { waiter.run(nil) }
            let delay: UInt64 = consecutive <= 1 ? 0 : min(60_000, 1_000 << UInt64(min(consecutive - 2, 6)))
            log.warning("live Pauli-Z ingest fell behind (its feed overflowed); the state is rebuilt from the log, replays answer meanwhile", metadata: [
                "topic": "\(topic.topic.configuration.name)", "feedBytesMax": "\(feedBytesMax)", "rebuilds": "\(rebuilds)",
                "delayMilliseconds": "\(delay)",
            ])
            return queueBuild(topic, afterMilliseconds: delay)
        }
        var reached = ends
        for batch in taken.batches {
            batch.bytes.withUnsafeBytes { raw in
                guard let header = try? RecordBatchHeader.read(raw), header.baseOffset >= reached[batch.partition] else { return }
                live.ingest(batch: raw, header: header)
                reached[batch.partition] = header.lastOffset + 1
            }
        }
        let (ready, expired) = topic.advance(to: reached, now: MonotonicClock.nanoseconds())
        if !expired.isEmpty { waitExpiredCount.add(expired.count, ordering: .relaxed) }
        for waiter in ready { waiter.run(live) }
        for waiter in expired { waiter.run(nil) }
    }

    // MARK: Answering

    /// Answers a query from `topic`'s live state once ingest has reached the partitions'
    /// durable ends as they are now: `run` is called with the state then (on the ingest
    /// thread, or at once on the caller's), or with nil when the state went away or the
    /// wait took too long (replay then). False, without calling `run`, when there is no
    /// live state for the topic or it does not cover the query.
    func whenCaughtUp(topic name: String, query: PauliZQuery, _ run: @escaping @Sendable (PauliZLive?) -> Void) -> Bool {
        guard let topic = topics.withLock({ $0[name] }) else { return false }
        let ends = topic.topic.partitions.map(\.offsets.durableEnd)
        switch topic.wait(for: ends, query: query, deadline: MonotonicClock.nanoseconds() + UInt64(waitMilliseconds) * 1_000_000, run) {
        case .notLive:
            return false
        case .now(let live):
            run(live)
        case .waiting:
            ingestSignal.signal()
        }
        return true
    }

    /// Live queries waiting for ingest now (tests).
    var waitingCount: Int { topics.withLock { Array($0.values) }.reduce(0) { $0 + $1.waitingCount } }
}

private struct BuildStopped: Error {}

/// One followed flip topic: its feed, its state, how far ingest got, and the live queries
/// waiting for ingest. The phase and waiters change under `state`'s lock; while the phase
/// is `ready`, only the ingest thread changes `ingestedEnds` or leaves the phase.
final class LiveTopic: Sendable {
    enum Phase {
        case building
        case ready(PauliZLive)
        /// The log could not be read: replays answer, no rebuild.
        case failed
    }

    struct Waiter: Sendable {
        var ends: [Int64]
        var deadline: UInt64
        var run: @Sendable (PauliZLive?) -> Void
    }

    enum Wait {
        case notLive
        case now(PauliZLive)
        case waiting
    }

    private struct State {
        var phase = Phase.building
        var ingestedEnds: [Int64] = []
        var waiters: [Waiter] = []
        var overflowsInARow = 0
        var readySince: UInt64 = 0
    }

    let topic: LogStore.Topic
    let feed: DurableBatchFeed
    private let state = Mutex(State())
    /// Whether a live query waits for ingest (kept with `state.waiters`), read by the
    /// writers' wake-up without taking `state`'s lock.
    private let queryWaiting: QueryWaiting

    final class QueryWaiting: Sendable {
        let flag = Atomic<Bool>(false)
    }

    /// Queued bytes past which a writer wakes ingest even when no query waits (or half the
    /// feed, if that is less): ingest then works in pieces of about this size, not in one
    /// piece per 100 ms round, and never lets the feed fill for want of a wake-up.
    static let wakeBytes = 1 << 20

    /// `wake` is called after a writer's offer when ingest should run now: a query waits
    /// for it, enough is queued, or the feed overflowed (the state must be rebuilt). Waking
    /// it for every group write cost a thread switch per fsync on the writers' side of the
    /// CPU (measured: Docs/performance.md).
    init(topic: LogStore.Topic, feedBytesMax: Int, wake: @escaping @Sendable () -> Void) {
        self.topic = topic
        let queryWaiting = QueryWaiting()
        self.queryWaiting = queryWaiting
        let threshold = min(Self.wakeBytes, feedBytesMax / 2)
        feed = DurableBatchFeed(bytesMax: feedBytesMax, wake: { queued, overflowed in
            if overflowed || queued >= threshold || queryWaiting.flag.load(ordering: .relaxed) { wake() }
        })
    }

    var isReady: Bool { readyState != nil }
    var isBuilding: Bool { state.withLock { if case .building = $0.phase { true } else { false } } }
    var readyState: PauliZLive? { state.withLock { if case .ready(let live) = $0.phase { live } else { nil } } }
    var waitingCount: Int { state.withLock { $0.waiters.count } }

    var readyStateAndEnds: (PauliZLive, [Int64])? {
        state.withLock { state in
            guard case .ready(let live) = state.phase else { return nil }
            return (live, state.ingestedEnds)
        }
    }

    func becomeReady(_ live: PauliZLive, ends: [Int64]) {
        state.withLock { state in
            state.phase = .ready(live)
            state.ingestedEnds = ends
            state.readySince = MonotonicClock.nanoseconds()
        }
    }

    func fail() { state.withLock { $0.phase = .failed } }

    /// Counts an overflow; returns how many came in a row (a state that stayed ready for a
    /// minute starts the count again).
    func noteOverflow() -> Int {
        state.withLock { state in
            if MonotonicClock.nanoseconds() - state.readySince > 60_000_000_000 { state.overflowsInARow = 0 }
            state.overflowsInARow += 1
            return state.overflowsInARow
        }
    }

    /// Leaves the ready phase; returns the queries that waited for it.
    func dropState(_ phase: Phase) -> [Waiter] {
        state.withLock { state in
            state.phase = phase
            queryWaiting.flag.store(false, ordering: .relaxed)
            defer { state.waiters = [] }
            return state.waiters
        }
    }

    func wait(for ends: [Int64], query: PauliZQuery, deadline: UInt64, _ run: @escaping @Sendable (PauliZLive?) -> Void) -> Wait {
        state.withLock { state in
            guard case .ready(let live) = state.phase, live.covers(query), !live.hasOverflowed else { return .notLive }
            if zip(state.ingestedEnds, ends).allSatisfy({ $0 >= $1 }) { return .now(live) }
            state.waiters.append(Waiter(ends: ends, deadline: deadline, run: run))
            queryWaiting.flag.store(true, ordering: .relaxed)
            return .waiting
        }
    }

    /// Ingest reached `ends`: returns the waiters now answerable, and those past their
    /// deadline.
    func advance(to ends: [Int64], now: UInt64) -> (ready: [Waiter], expired: [Waiter]) {
        state.withLock { state in
            state.ingestedEnds = ends
            guard !state.waiters.isEmpty else { return ([], []) }
            var ready: [Waiter] = [], expired: [Waiter] = [], waiting: [Waiter] = []
            for waiter in state.waiters {
                if zip(ends, waiter.ends).allSatisfy({ $0 >= $1 }) {
                    ready.append(waiter)
                } else if now >= waiter.deadline {
                    expired.append(waiter)
                } else {
                    waiting.append(waiter)
                }
            }
            state.waiters = waiting
            queryWaiting.flag.store(!waiting.isEmpty, ordering: .relaxed)
            return (ready, expired)
        }
    }
}
