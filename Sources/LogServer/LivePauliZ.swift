import Glibc
import LogFormat
import LogIO
import LogStorage
import Logging
import PauliZ
import PauliZReplay
import Synchronization

/// The server's live Pauli-Z state: one `PauliZLive` per flip topic, fed every durable
/// batch by its partitions' writers.
///
/// At start the states are built from the durable log on a thread of their own while the
/// server already listens and takes appends: a topic's queries are replayed until its
/// state is ready. Each build first sets observers on the topic's partitions, which keep
/// the batches that become durable meanwhile; then reads each partition's durable log up
/// to its end as it is after that; then, in order, feeds the kept batches from that end on
/// (those before it were in what it read) and from then on every batch as it comes.
final class LivePauliZ: Sendable {
    private let states = Mutex<[String: PauliZLive]>([:])
    /// Topics followed or being built: each is followed once (a topic created just as the
    /// server starts could otherwise be built twice, the second observer silently
    /// replacing the first).
    private let followed = Mutex<Set<String>>([])
    private let building = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)
    let rowsMax: Int
    let pendingBytesMax: Int
    let hooks: BuildHooks

    /// Points in a build where tests append (on the building thread).
    struct BuildHooks: Sendable {
        var afterObserving: (@Sendable () -> Void)?
        var beforeCatchingUp: (@Sendable () -> Void)?
    }

    init(rowsMax: Int = PauliZLive.rowsMaxDefault, pendingBytesMax: Int = Limits.paulizLivePendingBytesMax, hooks: BuildHooks = BuildHooks()) {
        self.rowsMax = rowsMax
        self.pendingBytesMax = pendingBytesMax
        self.hooks = hooks
    }

    func state(_ topic: String) -> PauliZLive? { states.withLock { $0[topic] } }

    /// Topics whose live state answers; topics whose state is still being built.
    var readyCount: Int { states.withLock { $0.count } }
    var buildingCount: Int { building.load(ordering: .relaxed) }

    /// Builds the state of every flip topic on a thread of its own and returns at once.
    func start(store: LogStore, logger: Logger) {
        let topics = store.topicConfigurations.filter { $0.kind == .flip }.compactMap { store.topic($0.name) }
        guard !topics.isEmpty else { return }
        building.add(topics.count, ordering: .relaxed)
        let started = ContinuousClock.now
        startDetachedThread {
            for topic in topics {
                self.build(topic, logger: logger)
                self.building.subtract(1, ordering: .relaxed)
            }
            logger.info("live Pauli-Z build done", metadata: [
                "topics": "\(topics.count)", "ready": "\(self.readyCount)", "seconds": "\((ContinuousClock.now - started).components.seconds)",
            ])
        }
    }

    /// Stops a build under way (between two batches) and waits for it to end: the store
    /// is about to close.
    func stop() {
        stopping.store(true, ordering: .relaxed)
        while building.load(ordering: .relaxed) > 0 { usleep(1_000) }
    }

    /// Builds the state of a topic created while the server runs (on the caller's thread).
    func follow(_ topic: LogStore.Topic, logger: Logger) {
        building.add(1, ordering: .relaxed)
        defer { building.subtract(1, ordering: .relaxed) }
        build(topic, logger: logger)
    }

    /// Builds a topic's state from its durable log, then follows its appends (see the
    /// type's comment). Gives up, logging why, when the log cannot be read, the build is
    /// stopped, or more than `pendingBytesMax` arrive while it reads: replays answer then.
    private func build(_ topic: LogStore.Topic, logger: Logger) {
        let configuration = topic.configuration
        guard followed.withLock({ $0.insert(configuration.name).inserted }) else { return }
        let storm = configuration.storm
        let live: PauliZLive
        do {
            live = try PauliZLive(
                storm: StormParameters(intervalMilliseconds: storm.intervalMilliseconds, enter: storm.enter, exit: storm.exit),
                polarityMap: configuration.polarityMap ?? [:], rowsMax: rowsMax)
        } catch {
            logger.warning("no live Pauli-Z state", metadata: ["topic": "\(configuration.name)", "error": "\(error)"])
            return
        }
        let feed = LiveFeed(live: live, pendingBytesMax: pendingBytesMax)
        for (index, partition) in topic.partitions.enumerated() {
            partition.observeDurableBatches { bytes in feed.offer(partition: index, bytes) }
        }
        hooks.afterObserving?()
        func stopObserving() {
            for partition in topic.partitions { partition.observeDurableBatches(nil) }
        }
        func giveUp(_ why: String, _ error: (any Error)? = nil) {
            stopObserving()
            var metadata: Logger.Metadata = ["topic": "\(configuration.name)"]
            if let error { metadata["error"] = "\(error)" }
            logger.warning("no live Pauli-Z state: \(why); replays answer its queries", metadata: metadata)
        }
        var ends: [Int64] = []
        do {
            for partition in topic.partitions {
                let offsets = partition.offsets
                try PauliZServerReplay.forEachBatch(of: partition, from: offsets.start, to: offsets.durableEnd) { header, batch in
                    if self.stopping.load(ordering: .relaxed) { throw BuildStopped() }
                    live.ingest(batch: batch, header: header)
                }
                ends.append(offsets.durableEnd)
            }
        } catch is BuildStopped {
            return stopObserving()
        } catch {
            return giveUp("the log could not be read", error)
        }
        hooks.beforeCatchingUp?()
        guard feed.catchUp(ends: ends) else {
            return giveUp("more than \(pendingBytesMax >> 20) MiB were appended while it was being built")
        }
        states.withLock { $0[configuration.name] = live }
    }
}

private struct BuildStopped: Error {}

/// What a topic's partitions' observers feed: kept while the state is built (with the
/// partition each came from), then fed straight to the state. Under one lock, so the
/// switch from keeping to feeding loses and doubles nothing.
private final class LiveFeed: Sendable {
    private enum Phase {
        case building(pending: [(partition: Int, bytes: [UInt8])], bytes: Int)
        case feeding
        case abandoned
    }

    private let live: PauliZLive
    private let pendingBytesMax: Int
    private let phase = Mutex<Phase>(.building(pending: [], bytes: 0))

    init(live: PauliZLive, pendingBytesMax: Int) {
        self.live = live
        self.pendingBytesMax = pendingBytesMax
    }

    /// A durable batch of `partition`, on that partition's writer thread.
    func offer(partition: Int, _ bytes: [UInt8]) {
        phase.withLock { phase in
            switch phase {
            case .building(var pending, let held):
                if held + bytes.count > pendingBytesMax {
                    phase = .abandoned
                    return
                }
                phase = .building(pending: [], bytes: 0)  // `pending` is not shared while appended to
                pending.append((partition, bytes))
                phase = .building(pending: pending, bytes: held + bytes.count)
            case .feeding:
                Self.feed(live, bytes)
            case .abandoned:
                return
            }
        }
    }

    /// The log was read up to `ends` (one per partition): feeds the kept batches from
    /// there on, in order, and every later one as it comes. False when too much arrived.
    func catchUp(ends: [Int64]) -> Bool {
        phase.withLock { phase in
            guard case .building(let pending, _) = phase else { return false }
            for (partition, bytes) in pending {
                // A batch that was durable when its partition was read is in what was read.
                Self.feed(live, bytes, unless: { $0.baseOffset < ends[partition] })
            }
            phase = .feeding
            return true
        }
    }

    private static func feed(_ live: PauliZLive, _ bytes: [UInt8], unless skipped: (RecordBatchHeader) -> Bool = { _ in false }) {
        bytes.withUnsafeBytes { raw in
            guard let header = try? RecordBatchHeader.read(raw), !skipped(header) else { return }
            live.ingest(batch: raw, header: header)
        }
    }
}
