import LogFormat
import LogIO
import LogStorage
import Logging
import PauliZ
import PauliZReplay
import NIOCore
import Synchronization
import WireProtocol

/// Counters of the server itself, for `health`.
final class ServerCounters: Sendable {
    let connections = Atomic<Int>(0)
    let connectionsTotal = Atomic<Int>(0)
    let connectionsRefused = Atomic<Int>(0)
    let authFailures = Atomic<Int>(0)
    /// Requests started (a request parked by backpressure counts when it starts).
    let requests = Atomic<Int>(0)
    let malformedFrames = Atomic<Int>(0)
    let handshakeTimeouts = Atomic<Int>(0)
    /// Pauli-Z queries answered from the live state, and by replaying the log.
    let paulizLiveAnswers = Atomic<Int>(0)
    let paulizReplayAnswers = Atomic<Int>(0)
    /// Reads and queries refused because the query pool's queue was full.
    let queriesRefused = Atomic<Int>(0)
    /// Set when shutdown begins: health says so, and refusals say `shutting_down`.
    let stopping = Atomic<Bool>(false)
}

/// Carries out requests against the store, for a principal, never on an event loop
/// thread (Docs/design.md, "Threads"):
/// - appends are queued without blocking and answered from the partition writers' threads;
/// - producer inits and topic creation (short durable writes of the store's metadata) run
///   on the writers' pool;
/// - everything that reads (fetches, offsets by time, Pauli-Z answers and replays) runs on
///   the bounded query pool: past its queue limit a request is refused as `overloaded`,
///   so reads and analytics never take a writer's thread.
final class RequestRouter: Sendable {
    let store: LogStore
    let writers: any BlockingExecutor
    let queries: IOThreadPool
    let counters: ServerCounters
    let live: LivePauliZ
    let logger: Logger

    init(store: LogStore, writers: any BlockingExecutor, queries: IOThreadPool, counters: ServerCounters, live: LivePauliZ = LivePauliZ(), logger: Logger) {
        self.store = store
        self.writers = writers
        self.queries = queries
        self.counters = counters
        self.live = live
        self.logger = logger
    }

    typealias Reply = @Sendable (Result<WireProtocol.Reply, ProtocolError>?) -> Void

    /// Answers `request` through `reply`, exactly once (`nil`: no response, for ack none).
    func handle(_ request: Request, principal: Principal, eventLoop: any EventLoop, reply: @escaping Reply) {
        switch request {
        case .hello:
            reply(.failure(ProtocolError(.handshakeRequired, "a second hello on one connection")))
        case .createTopic(let info):
            guard principal.allows(.admin, on: info.name) else { return reply(.failure(unauthorized(principal, .admin, info.name))) }
            onWriters(reply) { () throws(StorageError) in
                let created = try self.createTopic(info)
                if created.kind == .flip, let topic = self.store.topic(created.name) { self.live.follow(topic) }
                return .topic(self.info(created, withOffsets: true))
            }
        case .listTopics:
            let topics = store.topicConfigurations.filter { principal.allows(.consume, on: $0.name) }
            reply(.success(.topics(topics.map { info($0, withOffsets: false) })))
        case .describeTopic(let name):
            guard principal.allows(.consume, on: name) else { return reply(.failure(unauthorized(principal, .consume, name))) }
            guard let topic = store.topic(name) else { return reply(.failure(ProtocolError(.notFound, "no topic \"\(name)\""))) }
            reply(.success(.topic(info(topic.configuration, withOffsets: true))))
        case .initProducer(let name):
            guard principal.allowsAnywhere(.produce) else { return reply(.failure(ProtocolError(.unauthorized, "token \"\(principal.name)\" may not produce"))) }
            onWriters(reply) { () throws(StorageError) in
                let identity = try self.store.producers.initialize(name: name)
                return .producer(producerId: identity.producerId, epoch: identity.epoch)
            }
        case .append(let append):
            // Ack none is never answered, not even with an error (Docs/protocol.md).
            guard principal.allows(.produce, on: append.topic) else { return reply(append.ack == .none ? nil : .failure(unauthorized(principal, .produce, append.topic))) }
            self.append(append, reply: reply)
        case .pauliz(let query):
            guard principal.allows(.consume, on: query.topic) else { return reply(.failure(unauthorized(principal, .consume, query.topic))) }
            pauliz(query, reply: reply)
        case .fetch(let fetch):
            guard principal.allows(.consume, on: fetch.topic) else { return reply(.failure(unauthorized(principal, .consume, fetch.topic))) }
            self.fetch(fetch, eventLoop: eventLoop, reply: reply)
        case .listOffsets(let request):
            guard principal.allows(.consume, on: request.topic) else { return reply(.failure(unauthorized(principal, .consume, request.topic))) }
            listOffsets(request, reply: reply)
        case .health:
            reply(.success(.health(health())))
        }
    }

    /// Runs short durable metadata work on the writers' pool.
    private func onWriters(_ reply: @escaping Reply, _ work: @escaping @Sendable () throws(StorageError) -> WireProtocol.Reply) {
        writers.execute {
            do throws(StorageError) {
                reply(.success(try work()))
            } catch {
                reply(.failure(Self.protocolError(error)))
            }
        }
    }

    /// Runs a read or an analytics job on the query pool, which answers through `reply`;
    /// or answers `overloaded` at once when the pool's queue is full.
    private func onQueries(_ reply: @escaping Reply, _ job: @escaping @Sendable () -> Void) {
        if !queries.submit(job) { reply(.failure(counters.stopping.load(ordering: .relaxed) ? shuttingDown() : overloaded())) }
    }

    func shuttingDown() -> ProtocolError {
        ProtocolError(.shuttingDown, "the server is shutting down; the request was not carried out")
    }

    /// The same for a job whose result is the answer.
    private func onQueries(_ reply: @escaping Reply, answering work: @escaping @Sendable () -> Result<WireProtocol.Reply, ProtocolError>) {
        onQueries(reply) { reply(work()) }
    }

    func overloaded() -> ProtocolError {
        counters.queriesRefused.add(1, ordering: .relaxed)
        return ProtocolError(.overloaded, "the server runs \(queries.threadCountMax) queries at a time with \(queries.queuedMax ?? 0) waiting, its limit; retry later")
    }

    private func listOffsets(_ request: ListOffsetsRequest, reply: @escaping Reply) {
        let partition: PartitionLog
        do {
            partition = try store.partition(topic: request.topic, index: Int(request.partition))
        } catch {
            return reply(.failure(Self.protocolError(error)))
        }
        @Sendable func answer(_ offset: Int64, _ offsets: PartitionOffsets) -> WireProtocol.Reply {
            .listOffsets(ListOffsetsReply(offset: offset, start: offsets.start, end: offsets.durableEnd))
        }
        let offsets = partition.offsets
        switch request.mode {
        case .earliest: return reply(.success(answer(offsets.start, offsets)))
        case .latest: return reply(.success(answer(offsets.durableEnd, offsets)))
        case .time: break
        }
        // By time: a look-up in the time index and a scan of the segment, on the query pool.
        onQueries(reply, answering: {
            do throws(StorageError) {
                let offset = try partition.offset(atOrAfterTime: request.time) ?? -1
                return .success(answer(offset, partition.offsets))
            } catch {
                return .failure(Self.protocolError(error))
            }
        })
    }

    private func createTopic(_ info: TopicInfo) throws(StorageError) -> TopicConfiguration {
        var map: [String: Int8]?
        if let entries = info.polarityMap {
            map = [:]
            for (state, polarity) in entries {
                if map![state] != nil { throw StorageError(.invalidArgument, "polarity map names state \"\(state)\" twice") }
                map![state] = polarity
            }
        }
        return try store.createTopic(
            name: info.name, partitionCount: Int(info.partitionCount), kind: info.kind == .flip ? .flip : .raw, polarityMap: map,
            stormIntervalMilliseconds: info.stormIntervalMilliseconds, stormEnter: Int(info.stormEnter), stormExit: Int(info.stormExit))
    }

    func info(_ configuration: TopicConfiguration, withOffsets: Bool) -> TopicInfo {
        let storm = configuration.storm
        var partitions: [TopicInfo.PartitionOffsets] = []
        if withOffsets, let topic = store.topic(configuration.name) {
            partitions = topic.partitions.map { let offsets = $0.offsets; return .init(start: offsets.start, end: offsets.durableEnd) }
        }
        return TopicInfo(
            name: configuration.name, partitionCount: UInt32(configuration.partitionCount), kind: configuration.kind == .flip ? .flip : .raw,
            createdAt: configuration.createdAt, polarityMap: configuration.polarityMap?.sorted { $0.key < $1.key }.map { ($0.key, $0.value) },
            stormIntervalMilliseconds: storm.intervalMilliseconds, stormEnter: UInt32(storm.enter), stormExit: UInt32(storm.exit), partitions: partitions)
    }

    // MARK: Append

    /// Queues every batch in order (each append call queues before it returns, so the
    /// order holds), then answers when all have results.
    private func append(_ request: AppendRequest, reply: @escaping Reply) {
        let partition: PartitionLog
        do {
            partition = try store.partition(topic: request.topic, index: Int(request.partition))
        } catch {
            return reply(request.ack == .none ? nil : .failure(Self.protocolError(error)))
        }
        if request.ack == .none {
            for batch in request.batches { partition.append(Array(batch.readableBytesView), ackMode: .none) { _ in } }
            return reply(nil)
        }
        if request.batches.isEmpty { return reply(.success(.append([]))) }
        let collector = AppendCollector(count: request.batches.count, reply: reply)
        let ackMode: AckMode = request.ack == .durable ? .durable : .written
        for (index, batch) in request.batches.enumerated() {
            partition.append(Array(batch.readableBytesView), ackMode: ackMode) { result in
                collector.set(index, Self.batchResult(result))
            }
        }
    }

    static func batchResult(_ result: Result<AppendOutcome, StorageError>) -> BatchResult {
        switch result {
        case .failure(let error):
            let protocolError = protocolError(error)
            return BatchResult(error: protocolError.code, message: protocolError.message, outcome: .noOutcome)
        case .success(let outcome):
            switch outcome {
            case .committed(let appended):
                return BatchResult(outcome: .committed, baseOffset: appended.baseOffset, lastOffset: appended.lastOffset, appendTime: appended.appendTime)
            case .duplicate(let appended):
                return BatchResult(outcome: .duplicate, baseOffset: appended.baseOffset, lastOffset: appended.lastOffset, appendTime: appended.appendTime)
            case .refused(let refusals):
                return BatchResult(outcome: .refused, refusals: refusals)
            case .fenced(let message):
                return BatchResult(message: message, outcome: .fenced)
            case .outOfOrder(let message):
                return BatchResult(message: message, outcome: .outOfOrder)
            case .unknownProducer(let message):
                return BatchResult(message: message, outcome: .unknownProducer)
            }
        }
    }

    // MARK: Fetch

    /// Reads on the query pool; with nothing to return yet and a wait asked for, waits for
    /// durable data past the offset or the wait's end, whichever comes first.
    private func fetch(_ request: FetchRequest, eventLoop: any EventLoop, reply: @escaping Reply) {
        let partition: PartitionLog
        do {
            partition = try store.partition(topic: request.topic, index: Int(request.partition))
        } catch {
            return reply(.failure(Self.protocolError(error)))
        }
        let maxBytes = Int(min(request.maxBytes, UInt32(WireLimits.fetchBytesMax)))
        let wait = min(request.maxWaitMilliseconds, WireLimits.fetchWaitMillisecondsMax)
        @Sendable func read() -> Result<WireProtocol.Reply, ProtocolError> {
            do {
                let result = try partition.read(from: request.offset, maxBytes: maxBytes)
                let offsets = partition.offsets
                return .success(.fetch(FetchReply(logStart: offsets.start, durableEnd: result.durableEndOffset, nextOffset: result.nextOffset, records: ByteBuffer(bytes: result.bytes))))
            } catch {
                return .failure(Self.protocolError(error))
            }
        }
        onQueries(reply) {
            let first = read()
            guard wait > 0, case .success(.fetch(let reply0)) = first, reply0.records.readableBytes == 0 else { return reply(first) }
            let answered = Atomic<Bool>(false)
            // Called on the writer's thread: the read goes to the query pool.
            let id = partition.notifyWhenDurable(beyond: request.offset) {
                if !answered.exchange(true, ordering: .acquiringAndReleasing) { self.onQueries(reply, answering: read) }
            }
            guard let id else {
                if !answered.exchange(true, ordering: .acquiringAndReleasing) { reply(read()) }
                return
            }
            eventLoop.scheduleTask(in: .milliseconds(Int64(wait))) {
                if !answered.exchange(true, ordering: .acquiringAndReleasing) {
                    partition.cancelDurableWait(id)
                    reply(first)
                }
            }
        }
    }

    // MARK: Pauli-Z

    /// A Pauli-Z query, on the query pool: answered from the topic's live state once its
    /// ingest has reached the durable ends of the moment the query came (`LivePauliZ`),
    /// else by replaying the topic's durable data (PauliZServerReplay: the same engine as
    /// the offline replay, so the same rows). The answer is bounded by
    /// `WireLimits.paulizAnswerBytesMax`: a query with more is refused, saying to narrow it.
    private func pauliz(_ request: PaulizRequest, reply: @escaping Reply) {
        guard let topic = store.topic(request.topic) else { return reply(.failure(ProtocolError(.notFound, "no topic \"\(request.topic)\""))) }
        guard topic.configuration.kind == .flip else {
            return reply(.failure(ProtocolError(.invalidArgument, "topic \(request.topic) is a raw topic; Pauli-Z reads flip topics")))
        }
        let defaults = PauliZReplay.topicDefaults(
            topic.configuration, intervalMilliseconds: request.stormIntervalMilliseconds, enter: request.stormEnter.map(Int.init), exit: request.stormExit.map(Int.init))
        let query = PauliZQuery(
            windowMilliseconds: request.windowMilliseconds, hopMilliseconds: request.hopMilliseconds, from: request.from, to: request.to,
            storm: defaults.storm, polarityMap: defaults.polarityMap)
        do throws(PauliZError) {
            try query.validate()
        } catch {
            return reply(.failure(Self.protocolError(error)))
        }
        let filter: ResourceFilter
        switch request.filter {
        case .all: filter = .all
        case .exact(let resource): filter = .exact(resource)
        case .prefix(let prefix): filter = .prefix(prefix)
        }
        let counters = self.counters
        @Sendable func replay() -> Result<WireProtocol.Reply, ProtocolError> {
            counters.paulizReplayAnswers.add(1, ordering: .relaxed)
            return Self.paulizAnswer {
                let (replayed, statistics) = try PauliZServerReplay.run(topic: topic, query: query, filter: filter)
                return (replayed, statistics.events)
            }
        }
        let waiting = live.whenCaughtUp(topic: request.topic, query: query) { state in
            self.onQueries(reply) {
                // nil from the state (it forgot the windows asked for, or gave up): replayed.
                let result = Result { try state?.answer(query, filter: filter) }
                if case .success(nil) = result { return reply(replay()) }
                counters.paulizLiveAnswers.add(1, ordering: .relaxed)
                reply(Self.paulizAnswer { (try result.get()!, 0) })
            }
        }
        if !waiting { onQueries(reply, answering: replay) }
    }

    /// Runs `compute` and encodes its result (and the events it read) as a reply, up to
    /// the answer limit.
    static func paulizAnswer(_ compute: () throws -> (PauliZResult, Int64)) -> Result<WireProtocol.Reply, ProtocolError> {
        do {
            let (result, eventsRead) = try compute()
            // Built whole (then sent in parts of a frame each), up to the answer limit.
            var rows: [PaulizReply.Row] = []
            var bytes = PaulizReply.partHeaderBytes
            let budget = WireLimits.paulizAnswerBytesMax
            try result.forEachRow { row in
                let wire = PaulizReply.Row(resource: result.name(of: row.key), row)
                bytes += PaulizReply.encodedBytes(wire)
                if bytes > budget { throw AnswerTooLarge() }
                rows.append(wire)
            }
            let episodes = result.episodes.map { episode in
                PaulizReply.Episode(resource: result.name(of: episode.resource), start: episode.start, end: episode.end, flips: episode.flips, peak: episode.peak)
            }
            bytes += episodes.reduce(0) { $0 + PaulizReply.encodedBytes($1) }
            if bytes > budget { throw AnswerTooLarge() }
            return .success(.pauliz(PaulizReply(horizon: result.horizon, eventsRead: eventsRead, rows: rows, episodes: episodes)))
        } catch is AnswerTooLarge {
            return .failure(ProtocolError(.limitReached, "the answer holds more than \(WireLimits.paulizAnswerBytesMax >> 20) MiB; narrow it with from/to or a resource or prefix, or ask a stopped server's data directory (lodestone pauliz --data)"))
        } catch let error as StorageError {
            return .failure(Self.protocolError(error))
        } catch let error as PauliZError {
            return .failure(Self.protocolError(error))
        } catch {
            return .failure(ProtocolError(.internalError, "\(error)"))
        }
    }

    /// Stops building an answer as soon as it passes the answer limit.
    private struct AnswerTooLarge: Error {}

    // MARK: Health

    func health() -> HealthReply {
        var statistics = PartitionStatistics()
        var readOnly = 0
        for topic in store.topicConfigurations {
            for partition in store.topic(topic.name)?.partitions ?? [] {
                let s = partition.statistics
                statistics.appendCount += s.appendCount
                statistics.fsyncCount += s.fsyncCount
                statistics.truncationCount += s.truncationCount
                statistics.producersExpiredCount += s.producersExpiredCount
                statistics.duplicateCount += s.duplicateCount
                statistics.fencedCount += s.fencedCount
                statistics.refusedBatchCount += s.refusedBatchCount
                statistics.overloadedCount += s.overloadedCount
                statistics.clockStepBackCount += s.clockStepBackCount
                statistics.indexRebuildCount += s.indexRebuildCount
                if partition.failure != nil { readOnly += 1 }
            }
        }
        func load(_ counter: borrowing Atomic<Int>) -> Int64 { Int64(counter.load(ordering: .relaxed)) }
        let queryLoad = queries.load
        let list: [(name: String, value: Int64)] = [
            ("connections", load(counters.connections)),
            ("connections_total", load(counters.connectionsTotal)),
            ("connections_refused", load(counters.connectionsRefused)),
            ("auth_failures", load(counters.authFailures)),
            ("requests", load(counters.requests)),
            ("malformed_frames", load(counters.malformedFrames)),
            ("handshake_timeouts", load(counters.handshakeTimeouts)),
            ("pauliz_live_answers", load(counters.paulizLiveAnswers)),
            ("pauliz_replay_answers", load(counters.paulizReplayAnswers)),
            ("pauliz_live_topics", Int64(live.readyCount)),
            ("pauliz_live_building", Int64(live.buildingCount)),
            ("pauliz_live_rebuilds", load(live.rebuildCount)),
            ("pauliz_live_waits_expired", load(live.waitExpiredCount)),
            ("queries_running", Int64(queryLoad.running)),
            ("queries_queued", Int64(queryLoad.queued)),
            ("queries_refused", load(counters.queriesRefused)),
            ("topics", Int64(store.topicConfigurations.count)),
            ("read_only_partitions", Int64(readOnly)),
            ("appends", Int64(statistics.appendCount)),
            ("fsyncs", Int64(statistics.fsyncCount)),
            ("truncations", Int64(statistics.truncationCount)),
            ("index_rebuilds", Int64(statistics.indexRebuildCount)),
            ("producers_expired", Int64(statistics.producersExpiredCount)),
            ("duplicates", Int64(statistics.duplicateCount)),
            ("fenced", Int64(statistics.fencedCount)),
            ("refused_batches", Int64(statistics.refusedBatchCount)),
            ("overloaded", Int64(statistics.overloadedCount)),
            ("clock_steps_back", Int64(statistics.clockStepBackCount)),
        ]
        return HealthReply(status: Self.status(stopping: counters.stopping.load(ordering: .relaxed), readOnlyPartitions: readOnly), counters: list)
    }

    /// `health`'s status (Docs/protocol.md lists them): "shutting_down" once shutdown has
    /// begun, else "degraded: N partitions are read-only" while any is, else "ok".
    static func status(stopping: Bool, readOnlyPartitions: Int) -> String {
        if stopping { return "shutting_down" }
        return readOnlyPartitions == 0 ? "ok" : "degraded: \(readOnlyPartitions) partitions are read-only"
    }

    // MARK: Errors

    func unauthorized(_ principal: Principal, _ right: Right, _ topic: String) -> ProtocolError {
        ProtocolError(.unauthorized, "token \"\(principal.name)\" has no \(right.rawValue) right on topic \"\(topic)\"")
    }

    static func protocolError(_ error: StorageError) -> ProtocolError {
        let code: ErrorCode
        switch error.code {
        case .invalidBatch: code = .invalidBatch
        case .overloaded: code = .overloaded
        case .readOnly: code = .readOnly
        case .closed: code = .shuttingDown
        case .offsetOutOfRange: code = .offsetOutOfRange
        case .corruption: code = .corruption
        case .io: code = .ioError
        case .notFound: code = .notFound
        case .alreadyExists: code = .alreadyExists
        case .invalidArgument: code = .invalidArgument
        case .locked: code = .internalError
        case .limitReached: code = .limitReached
        }
        return ProtocolError(code, error.message)
    }

    static func protocolError(_ error: PauliZError) -> ProtocolError {
        switch error.code {
        case .invalidArgument: ProtocolError(.invalidArgument, error.message)
        case .limitReached: ProtocolError(.limitReached, error.message)
        case .io: ProtocolError(.ioError, error.message)
        }
    }
}

/// Collects the results of an append's batches, answering once all are in.
final class AppendCollector: Sendable {
    private let state: Mutex<(results: [BatchResult?], remaining: Int)>
    private let reply: RequestRouter.Reply

    init(count: Int, reply: @escaping RequestRouter.Reply) {
        state = Mutex((Array(repeating: nil, count: count), count))
        self.reply = reply
    }

    func set(_ index: Int, _ result: BatchResult) {
        let done = state.withLock { state -> [BatchResult]? in
            state.results[index] = result
            state.remaining -= 1
            return state.remaining == 0 ? state.results.map { $0! } : nil
        }
        if let done { reply(.success(.append(done))) }
    }
}
