import DequeModule
import LogFormat
import LogIO
import Logging
import Synchronization

/// Counters of one partition, for the health request and the metrics endpoint.
public struct PartitionStatistics: Sendable, Equatable {
    public var appendCount = 0
    public var appendedBytes: Int64 = 0
    public var groupWriteCount = 0
    public var fsyncCount = 0
    public var fsyncNanosecondsTotal: UInt64 = 0
    public var fsyncNanosecondsMax: UInt64 = 0
    public var segmentRollCount = 0
    public var overloadedCount = 0
    public var invalidBatchCount = 0
    /// Times the wall clock stepped back and the append time was held at its last value.
    public var clockStepBackCount = 0
    /// Torn tails cut at open, and the bytes they held (design decision 6).
    public var truncationCount = 0
    public var truncatedBytes: Int64 = 0
    public var indexRebuildCount = 0
    public var checkpointCount = 0
    /// Replay protection (design decision 8): retries answered from memory, producer-level
    /// refusals, batches refused for their records, producers expired while idle.
    public var duplicateCount = 0
    public var fencedCount = 0
    public var outOfOrderCount = 0
    public var unknownProducerCount = 0
    public var refusedBatchCount = 0
    public var producersExpiredCount = 0
    public var snapshotCount = 0

    public init() {}

    mutating func count(_ outcome: AppendOutcome) {
        switch outcome {
        case .fenced: fencedCount += 1
        case .outOfOrder: outOfOrderCount += 1
        case .unknownProducer: unknownProducerCount += 1
        case .refused: refusedBatchCount += 1
        case .committed, .duplicate: break
        }
    }
}

/// The offsets that bound a partition's log.
public struct PartitionOffsets: Sendable, Equatable {
    /// The first offset in the log.
    public var start: Int64
    /// The offset after the last synced batch: readers see offsets below it only.
    public var durableEnd: Int64
    /// The offset the next appended record gets.
    public var next: Int64

    public init(start: Int64, durableEnd: Int64, next: Int64) {
        self.start = start
        self.durableEnd = durableEnd
        self.next = next
    }
}

/// Whole batches read from a partition.
public struct ReadResult: Sendable, Equatable {
    /// The batches, back to back, exactly as stored (CRC-checked on the way).
    public var bytes: [UInt8]
    public var batchCount: Int
    /// The offset to read from next.
    public var nextOffset: Int64
    /// The end of durable data when the read ran.
    public var durableEndOffset: Int64
}

/// One partition: a directory of segments, one writer, any number of readers.
///
/// Appends are validated, then, under the partition's lock, given their offsets and append
/// time, stamped (design decision 1) and queued; queue order is log order. The writer runs
/// on a `BlockingExecutor` thread: it takes what is queued (at most `groupWriteBytesMax`
/// bytes, and what fits in the segment), writes it with one write call, acknowledges the
/// `written` appends, calls `fdatasync` once, and acknowledges the `durable` appends in log
/// order. The next group write starts only after that fsync has returned, so at most one
/// group write is ever unsynced (design decision 4). Readers see only synced data.
///
/// A failed write or fsync is never retried: the partition turns read-only with the reason,
/// fails everything pending, and stays so until it is reopened and recovered (design
/// decision 5).
public final class PartitionLog: Sendable {
    public let topicConfiguration: TopicConfiguration
    public let partition: Int
    public var topic: String { topicConfiguration.name }
    /// The store's producer registry; nil for a partition opened alone (then producer ids
    /// are checked against this partition's state only).
    let registry: ProducerRegistry?
    public let directory: String
    public let recoveryReport: RecoveryReport
    let environment: StorageEnvironment
    private let state: Mutex<State>
    /// Where the writer hands each durable batch (the server's live Pauli-Z ingest), if
    /// anywhere: a feed that never waits (see `DurableBatchFeed`). In a class, not a
    /// closure: a closure kept directly in a Mutex is re-wrapped in a conversion thunk on
    /// every `withLock` (measured: 80% of the server's time after a minute of appends).
    private let durableFeed = Mutex<DurableBatchFeed?>(nil)

    var fileIO: any FileIO { environment.fileIO }
    var configuration: StorageConfiguration { environment.configuration }
    var clock: any WallClock { environment.clock }
    var executor: any BlockingExecutor { environment.executor }
    var logger: Logger { environment.logger }

    public typealias AppendCompletion = @Sendable (Result<AppendOutcome, StorageError>) -> Void

    struct PendingAppend: GroupCommitItem {
        var bytes: [UInt8]
        var byteCount: Int { bytes.count }
        /// Where the queued bytes go.
        var result: AppendResult
        /// What the append is answered on success: committed, or refused (a refusal marker).
        var outcome: AppendOutcome
        var effects: AppendEffects
        /// Retries of this batch wait under this key.
        var key: PendingBatchKey?
        var ackMode: AckMode
        var completion: AppendCompletion?
    }

    struct State {
        var segments: [SegmentState]
        /// The write queue, the writer's scheduling, closing and failure.
        var commit: GroupCommit<PendingAppend>
        /// Offset for the next append (assigned at enqueue).
        var nextOffset: Int64
        var lastAppendTime: Int64
        var closeCompletions: [@Sendable (Result<Void, StorageError>) -> Void] = []
        var bytesSinceCheckpoint = 0
        var statistics = PartitionStatistics()
        var replay: ReplayState
        /// Retries of queued batches, waiting for the original's outcome.
        var waiters: [PendingBatchKey: [AppendCompletion]] = [:]
        /// Readers waiting for durable data past an offset (long-poll fetches), by id.
        var durableWaiters: [UInt64: (offset: Int64, callback: @Sendable () -> Void)] = [:]
        var nextWaiterId: UInt64 = 0
        /// The summary of the active segment of a flip topic, as its batches are written;
        /// nil for raw topics and for an active segment that already held data at open.
        var activeSummary: SegmentSummaryBuilder?
        /// Registry statuses looked up while the registry's generation stayed the same.
        var registryCache: (generation: Int, statuses: [Int64: ProducerRegistry.Status]) = (-1, [:])

        /// The last segment, mutated in place: a get/set pair would copy the segment out
        /// and back on every change, and with it (copy on write) its index arrays.
        var active: SegmentState {
            get { segments[segments.count - 1] }
            _modify { yield &segments[segments.count - 1] }
        }

        var durableEnd: Int64 { active.durableNextOffset }
        var startOffset: Int64 { segments[0].baseOffset }
    }

    private init(topic: TopicConfiguration, partition: Int, directory: String, environment: StorageEnvironment, registry: ProducerRegistry?, segments: [SegmentState], replay: ReplayState, report: RecoveryReport) {
        self.topicConfiguration = topic
        self.partition = partition
        self.registry = registry
        self.directory = directory
        self.environment = environment
        self.recoveryReport = report
        var segments = segments
        for index in segments.indices { segments[index].fileSize = segments[index].size }
        let last = segments[segments.count - 1]
        let lastAppendTime = segments.map(\.maxTimestamp).max() ?? -1
        let commit = GroupCommit<PendingAppend>(queuedBytesMax: environment.configuration.queuedBytesMax, queuedCountMax: environment.configuration.queuedAppendCountMax)
        var state = State(segments: segments, commit: commit, nextOffset: last.nextOffset, lastAppendTime: lastAppendTime, replay: replay)
        if topic.kind == .flip && last.size == 0 { state.activeSummary = SegmentSummaryBuilder() }
        state.statistics.producersExpiredCount = replay.expiredProducerCount
        state.statistics.truncationCount = report.truncation == nil ? 0 : 1
        state.statistics.truncatedBytes = report.truncation?.droppedBytes ?? 0
        state.statistics.indexRebuildCount = report.rebuiltIndexes.count
        self.state = Mutex(state)
    }

    // MARK: Opening

    /// Opens (creating when empty) the partition in `directory`, recovering it as
    /// `PartitionRecovery` decides, and records it as open before any append is taken.
    public static func open(directory: String, topic: String, partition: Int, environment: StorageEnvironment) throws(StorageError) -> PartitionLog {
        try open(directory: directory, topic: TopicConfiguration(name: topic, partitionCount: partition + 1, kind: .raw, createdAt: 0), partition: partition, environment: environment, registry: nil)
    }

    /// Opens a partition of `topic`: recovers its log, rebuilds replay protection from the
    /// newest valid snapshot and the log after it, and records the partition as open.
    public static func open(directory: String, topic: TopicConfiguration, partition: Int, environment: StorageEnvironment, registry: ProducerRegistry?) throws(StorageError) -> PartitionLog {
        var environment = environment
        environment.logger[metadataKey: "topic"] = "\(topic.name)"
        environment.logger[metadataKey: "partition"] = "\(partition)"
        let (fileIO, configuration, logger) = (environment.fileIO, environment.configuration, environment.logger)
        try configuration.check()
        do { try fileIO.makeDirectory(directory) } catch { throw StorageError.io(error, "creating partition directory") }
        try removeLeftovers(directory: directory, fileIO: fileIO)
        var outcome = try PartitionRecovery.analyze(directory: directory, fileIO: fileIO, configuration: configuration, writable: true, logger: logger)
        if outcome.segments.isEmpty {
            outcome.segments = [try createSegment(directory: directory, baseOffset: 0, fileIO: fileIO)]
        }
        try applyRecovery(outcome, fileIO: fileIO, logger: logger)
        let replay = try rebuildReplayState(
            directory: directory, segments: outcome.segments, isFlipTopic: topic.kind == .flip, environment: environment)
        let state = PartitionStateFile(clean: false, groupWriteBytesMax: configuration.groupWriteBytesMax)
        do {
            try fileIO.writeFileAtomically(joinPath(directory, PartitionStateFile.name), state.encoded())
        } catch {
            throw StorageError.io(error, "recording the partition as open")
        }
        return PartitionLog(
            topic: topic, partition: partition, directory: directory, environment: environment, registry: registry,
            segments: outcome.segments, replay: replay, report: outcome.report)
    }

    /// Temporary files of interrupted atomic writes, and index files without a log.
    private static func removeLeftovers(directory: String, fileIO: any FileIO) throws(StorageError) {
        do {
            let names = try fileIO.list(directory)
            let logs = Set(names.compactMap { SegmentFileName.parse($0).flatMap { $0.kind == .log ? $0.baseOffset : nil } })
            for name in names {
                let orphanIndex = SegmentFileName.parse(name).map { $0.kind != .log && !logs.contains($0.baseOffset) } ?? false
                if name.hasSuffix(".tmp") || orphanIndex { try fileIO.remove(joinPath(directory, name)) }
            }
        } catch {
            throw StorageError.io(error, "removing leftover files")
        }
    }

    /// Cuts a torn tail or pre-written zeros, makes what was recovered durable, and
    /// rewrites index files that were rebuilt.
    private static func applyRecovery(_ outcome: PartitionRecovery.Outcome, fileIO: any FileIO, logger: Logger) throws(StorageError) {
        let last = outcome.segments[outcome.segments.count - 1]
        do {
            if let cut = outcome.cut {
                try last.handle.file.truncate(to: cut)
            }
            if let cut = outcome.truncation {
                logger.warning("truncated a torn tail", metadata: [
                    "file": "\(last.handle.logPath)", "position": "\(cut.position)", "droppedBytes": "\(cut.droppedBytes)",
                    "nextOffset": "\(cut.nextOffset)", "reason": "\(cut.reason)",
                ])
            }
            if !outcome.report.cleanShutdown {
                try last.handle.file.dataSync()
            }
            for index in outcome.segments.indices where outcome.report.rebuiltIndexes.contains(outcome.segments[index].baseOffset) {
                try writeIndexes(outcome.segments[index], fileIO: fileIO, sync: outcome.segments[index].isSealed)
                logger.notice("rebuilt index files", metadata: ["segment": "\(outcome.segments[index].handle.logPath)"])
            }
        } catch {
            throw StorageError.io(error, "applying recovery")
        }
        // An empty partition (a topic just created) has nothing to recover and says nothing.
        let empty = outcome.segments.count == 1 && last.size == 0 && outcome.report.preallocatedBytesTrimmed == 0
        if outcome.report.truncation != nil || (!outcome.report.cleanShutdown && !empty) {
            logger.notice("recovered after an unclean stop", metadata: [
                "recoveryStart": "\(outcome.report.recoveryStartPosition)", "scannedBytes": "\(outcome.report.scannedBytes)",
                "nextOffset": "\(last.nextOffset)", "preallocatedBytesTrimmed": "\(outcome.report.preallocatedBytesTrimmed)",
            ])
        }
    }

    static func createSegment(directory: String, baseOffset: Int64, fileIO: any FileIO) throws(StorageError) -> SegmentState {
        let path = joinPath(directory, SegmentFileName.name(baseOffset: baseOffset, kind: .log))
        do {
            let file = try fileIO.open(path, mode: .createNew)
            try file.dataSync()
            try fileIO.syncDirectory(directory)
            return SegmentState(handle: SegmentHandle(directory: directory, baseOffset: baseOffset, file: file))
        } catch {
            throw StorageError.io(error, "creating segment \(path)")
        }
    }

    static func writeIndexes(_ segment: SegmentState, fileIO: any FileIO, sync: Bool) throws(IOError) {
        let (offsets, times) = segment.encodedIndexes()
        for (path, bytes) in [(segment.handle.indexPath, offsets), (segment.handle.timeIndexPath, times)] {
            let file = try fileIO.open(path, mode: .createOrOpen)
            do {
                try file.writeAll(bytes, at: 0)
                try file.truncate(to: Int64(bytes.count))
                if sync { try file.dataSync() }
                try file.close()
            } catch {
                try? file.close()
                throw error
            }
        }
    }

    // MARK: Appending

    /// A batch after the checks that need no lock: its header, and for a flip topic its
    /// records as flip events or the rule each breaks.
    struct CheckedBatch {
        var bytes: [UInt8]
        var header: RecordBatchHeader
        /// Flip topics: each record's event, by index, and the records already refused.
        var events: [(index: Int, event: FlipEvent)] = []
        var refusals: [RecordRefusal] = []
    }

    /// Appends one RecordBatch v2. `completion` runs once, with the outcome or an error:
    /// for `durable`, after the fsync that covers the batch; for `written`, after the write;
    /// for `none`, once queued; at once for what is answered without writing (a duplicate
    /// of a stored batch, a fenced or out-of-order producer, a refusal from a producer
    /// without an id). It runs on the writer's thread or on the caller's.
    public func append(_ batch: [UInt8], ackMode: AckMode = .durable, completion: @escaping AppendCompletion) {
        let checked: CheckedBatch
        do {
            checked = try check(batch, ackMode: ackMode)
        } catch {
            state.withLock { $0.statistics.invalidBatchCount += 1 }
            completion(.failure(error))
            return
        }
        let now = clock.nowMilliseconds()
        let generation = registry?.generation ?? 0
        let decision = state.withLock { state in
            let status = checked.header.producerId >= 0 ? registryStatus(checked.header, generation: generation, state: &state) : nil
            return decide(&state, checked, ackMode: ackMode, now: now, registryStatus: status, completion: completion)
        }
        switch decision {
        case .answer(let result):
            completion(result)
        case .queued(let schedule, let immediate):
            if schedule { scheduleWriter() }
            if let immediate { completion(.success(immediate)) }
        case .waiting:
            break
        }
    }

    /// Appends one batch and waits for its outcome (see the callback form).
    public func append(_ batch: [UInt8], ackMode: AckMode = .durable) async throws(StorageError) -> AppendOutcome {
        let result = await withUnsafeContinuation { (continuation: UnsafeContinuation<Result<AppendOutcome, StorageError>, Never>) in
            append(batch, ackMode: ackMode) { continuation.resume(returning: $0) }
        }
        return try result.get()
    }

    /// The checks that need no state: the batch's structure, producer fields, and for a
    /// flip topic every record's fields and partition.
    private func check(_ batch: [UInt8], ackMode: AckMode) throws(StorageError) -> CheckedBatch {
        let isFlip = topicConfiguration.kind == .flip
        var checked: CheckedBatch
        var records: [Record] = []
        do {
            if isFlip {
                let decoded = try RecordBatch.decode(batch, limits: configuration.batchLimits)
                records = decoded.records
                checked = CheckedBatch(bytes: batch, header: try RecordBatchHeader.read(bytes: batch))
            } else {
                checked = CheckedBatch(bytes: batch, header: try RecordBatchValidator.validate(batch, limits: configuration.batchLimits))
            }
        } catch {
            throw StorageError(.invalidBatch, "\(topic)/\(partition): \(error)")
        }
        let header = checked.header
        if header.producerId >= 0 {
            if ackMode == .none {
                throw StorageError(.invalidBatch, "\(topic)/\(partition): ack mode none takes no producer id (the batch has \(header.producerId)); use -1")
            }
            if header.producerEpoch < 0 || header.baseSequence < 0 {
                throw StorageError(.invalidBatch, "\(topic)/\(partition): producer \(header.producerId) needs an epoch and base sequence of 0 or more, got \(header.producerEpoch) and \(header.baseSequence)")
            }
        } else if header.producerId != -1 {
            throw StorageError(.invalidBatch, "\(topic)/\(partition): producer id \(header.producerId) is neither -1 nor a handed-out id")
        }
        for (index, record) in records.enumerated() {
            do {
                let event = try FlipEvent.decode(key: record.key, value: record.value)
                let owner = topicConfiguration.partition(forKey: event.key)
                if owner != partition {
                    checked.refusals.append(RecordRefusal(index: index, reason: .invalid, message: "resource \(event.resource) belongs to partition \(owner), not \(partition)"))
                } else {
                    checked.events.append((index, event))
                }
            } catch {
                checked.refusals.append(RecordRefusal(index: index, reason: .invalid, message: "\(error)"))
            }
        }
        return checked
    }

    /// The registry's word on a producer, cached while the registry's generation stays the
    /// same (taken before the lock: a newer init is seen by the next append at the latest).
    private func registryStatus(_ header: RecordBatchHeader, generation: Int, state: inout State) -> ProducerRegistry.Status {
        // Without a registry, any epoch is taken as current; the partition's own state
        // still fences older epochs it has seen.
        guard let registry else { return .named(epoch: header.producerEpoch) }
        if state.registryCache.generation != generation { state.registryCache = (generation, [:]) }
        if let cached = state.registryCache.statuses[header.producerId] { return cached }
        let status = registry.status(of: header.producerId)
        if state.registryCache.statuses.count >= Limits.partitionProducersTrackedMax { state.registryCache.statuses.removeAll() }
        state.registryCache.statuses[header.producerId] = status
        return status
    }

    enum Decision {
        /// Answered now, nothing queued.
        case answer(Result<AppendOutcome, StorageError>)
        /// Queued; `immediate` is the answer of an ack-none append.
        case queued(schedule: Bool, immediate: AppendOutcome?)
        /// A retry of a queued batch: answered with the original's outcome.
        case waiting
    }

    /// The decision under the lock: producer rules, then resource fencing, then queueing
    /// the batch, or the refusal marker that stands for it (design decision 8).
    private func decide(
        _ state: inout State, _ checked: CheckedBatch, ackMode: AckMode, now: Int64,
        registryStatus: ProducerRegistry.Status?, completion: @escaping AppendCompletion
    ) -> Decision {
        if let refusal = refusal(state, batchBytes: checked.bytes.count) {
            if refusal.code == .overloaded { state.statistics.overloadedCount += 1 }
            return .answer(.failure(refusal))
        }
        let header = checked.header
        let appendTime = max(now, state.lastAppendTime)
        var sequences: (first: Int32, last: Int32)?
        if let registryStatus {
            let inFlightMax = topicConfiguration.kind == .flip ? 1 : Limits.producerBatchWindow
            switch state.replay.checkProducer(
                id: header.producerId, epoch: header.producerEpoch, baseSequence: header.baseSequence,
                recordCount: header.recordCount, registry: registryStatus, inFlightMax: inFlightMax, now: now) {
            case .refused(let outcome):
                state.statistics.count(outcome)
                return .answer(.success(outcome))
            case .answered(let outcome):
                state.statistics.duplicateCount += 1
                return .answer(.success(outcome))
            case .waitFor(let key):
                state.statistics.duplicateCount += 1
                state.waiters[key, default: []].append(completion)
                return .waiting
            case .accept(let first, let last):
                sequences = (first, last)
            }
        }
        var refusals = checked.refusals
        var marks: [(String, ResourceMark)] = []
        if topicConfiguration.kind == .flip {
            (refusals, marks) = state.replay.checkRecords(checked.events, refusals: refusals)
        }
        if now < state.lastAppendTime { state.statistics.clockStepBackCount += 1 }
        if !refusals.isEmpty {
            state.statistics.refusedBatchCount += 1
            guard let sequences else { return .answer(.success(.refused(refusals))) }
            let marker = RefusalMarker.batch(
                producerId: header.producerId, producerEpoch: header.producerEpoch, baseSequence: sequences.first,
                lastSequence: sequences.last, refusals: refusals, timestamp: appendTime)
            let producerBatch = ProducerBatch(epoch: header.producerEpoch, firstSequence: sequences.first, lastSequence: sequences.last, outcome: .refused(refusals), appendTime: appendTime)
            return enqueue(&state, bytes: marker, lastOffsetDelta: 0, appendTime: appendTime, outcome: { _ in .refused(refusals) },
                           effects: AppendEffects(producer: (header.producerId, producerBatch)), ackMode: ackMode, completion: completion)
        }
        let producer = sequences.map { sequences in
            (header.producerId, ProducerBatch(epoch: header.producerEpoch, firstSequence: sequences.first, lastSequence: sequences.last, outcome: .committed(AppendResult(baseOffset: -1, lastOffset: -1, appendTime: -1)), appendTime: appendTime))
        }
        var effects = AppendEffects(producer: producer, resources: marks)
        if let first = checked.events.first {
            effects.eventCount = Int64(checked.events.count)
            effects.eventTimeMin = checked.events.reduce(first.event.time) { min($0, $1.event.time) }
            effects.eventTimeMax = checked.events.reduce(first.event.time) { max($0, $1.event.time) }
        }
        return enqueue(&state, bytes: checked.bytes, lastOffsetDelta: header.lastOffsetDelta, appendTime: appendTime, outcome: { .committed($0) },
                       effects: effects, ackMode: ackMode, completion: completion)
    }

    /// Gives the bytes their offsets and append time, stamps them, and queues them.
    private func enqueue(
        _ state: inout State, bytes: [UInt8], lastOffsetDelta: Int32, appendTime: Int64, outcome makeOutcome: (AppendResult) -> AppendOutcome,
        effects: AppendEffects, ackMode: AckMode, completion: @escaping AppendCompletion
    ) -> Decision {
        let result = AppendResult(baseOffset: state.nextOffset, lastOffset: state.nextOffset + Int64(lastOffsetDelta), appendTime: appendTime)
        let outcome = makeOutcome(result)
        var effects = effects
        if var producer = effects.producer {
            if case .committed = producer.batch.outcome { producer.batch.outcome = outcome }
            effects.producer = producer
        }
        var stamped = bytes
        RecordBatchStamp.stamp(&stamped, baseOffset: result.baseOffset, appendTime: appendTime)
        state.nextOffset = result.lastOffset + 1
        state.lastAppendTime = appendTime
        state.statistics.appendCount += 1
        state.statistics.appendedBytes += Int64(stamped.count)
        state.replay.admit(effects)
        let key = effects.producer.map { PendingBatchKey(producerId: $0.id, epoch: $0.batch.epoch, firstSequence: $0.batch.firstSequence) }
        let schedule = state.commit.enqueue(PendingAppend(
            bytes: stamped, result: result, outcome: outcome, effects: effects, key: key, ackMode: ackMode,
            completion: ackMode == .none ? nil : completion))
        return .queued(schedule: schedule, immediate: ackMode == .none ? outcome : nil)
    }

    private func refusal(_ state: State, batchBytes: Int) -> StorageError? {
        state.commit.refusal(bytes: batchBytes, name: "\(topic)/\(partition)")
    }

    // MARK: The writer

    private func scheduleWriter() {
        executor.execute { [self] in runWriter() }
    }

    /// A group to write: appends taken from the queue front, and whether the active
    /// segment must roll first.
    struct Group {
        var appends: [PendingAppend]
        var bytes: Int
        var roll: Bool
    }

    /// Writer steps taken in one turn on a pool thread before the writer goes to the back
    /// of the pool's queue: enough to save the thread hand-off between most groups, few
    /// enough that partitions sharing the pool take turns.
    static let writerStepsPerTurn = 8

    /// Writer steps: a group write and its fsync each, while work remains, up to
    /// `writerStepsPerTurn`; then it reschedules itself if work remains.
    func runWriter() {
        for _ in 0..<Self.writerStepsPerTurn {
            switch takeGroup() {
            case .idle:
                return
            case .shutdown:
                finishClose()
                return
            case .group(let group):
                writeAndSync(group)
                let again = state.withLock { $0.commit.groupDone() }
                if !again { return }
            }
        }
        scheduleWriter()
    }

    enum WriterStep {
        case idle
        case shutdown
        case group(Group)
    }

    /// How far a group got: which of its appends are acknowledged.
    private enum Progress {
        case nothingWritten
        /// Written: `written` appends acknowledged.
        case written
        /// Synced: every append acknowledged.
        case synced
    }

    private func takeGroup() -> WriterStep {
        let now = clock.nowMilliseconds()
        let (step, refused, failure) = state.withLock { state -> (WriterStep, [PendingAppend], StorageError?) in
            let active = state.active
            let nextOffset = state.nextOffset
            let (step, refused) = state.commit.takeGroup { frontBytes in
                let segmentBytes = Int64(configuration.segmentBytes)
                let tooOld = active.firstTimestamp.map { now - $0 >= configuration.segmentAgeMilliseconds } ?? false
                let tooManyOffsets = nextOffset - active.baseOffset > Int64(UInt32.max) - Int64(Limits.batchRecordCountMax)
                let roll = active.size > 0 && (active.size + Int64(frontBytes) > segmentBytes || tooOld || tooManyOffsets)
                let room = roll ? segmentBytes : segmentBytes - active.size
                return (roll, Int(min(Int64(configuration.groupWriteBytesMax), room)))
            }
            switch step {
            case .idle: return (.idle, refused, state.commit.failure)
            case .shutdown: return (.shutdown, refused, state.commit.failure)
            case .group(let appends, let bytes, let roll):
                precondition(Int64(bytes) <= (roll ? Int64(configuration.segmentBytes) : Int64(configuration.segmentBytes) - active.size), "a group write must fit in its segment")
                return (.group(Group(appends: appends, bytes: bytes, roll: roll)), refused, nil)
            }
        }
        if let failure {
            for append in refused { append.completion?(.failure(failure)) }
        }
        return step
    }

    /// Rolls if the group asks, then one write call, acks for `written`, one fdatasync,
    /// acks for `durable` in log order, and the recovery checkpoint when one is due.
    private func writeAndSync(_ group: Group) {
        var progress = Progress.nothingWritten
        do throws(IOError) {
            if group.roll { try roll(to: group.appends[0].result.baseOffset) }
            try write(group)
            progress = .written
            for append in group.appends where append.ackMode == .written { append.completion?(.success(append.outcome)) }
            let (checkpoint, waiting) = try sync(group)
            progress = .synced
            // Before the durable acks, so that a batch is offered before anyone is told it
            // is durable; the feed never waits for its consumer.
            if let feed = durableFeed.withLock({ $0 }) {
                for append in group.appends { feed.offer(partition: partition, append.bytes) }
            }
            for append in group.appends where append.ackMode == .durable { append.completion?(.success(append.outcome)) }
            for (outcome, completions) in waiting {
                for completion in completions { completion(.success(outcome.asRetryAnswer)) }
            }
            if let checkpoint {
                // The recovery point: index files for the synced part of the active segment.
                // Not synced: a torn or lost one only makes the next recovery read more.
                try Self.writeIndexes(checkpoint, fileIO: fileIO, sync: false)
            }
        } catch {
            let unacknowledged: [PendingAppend]
            switch progress {
            case .nothingWritten: unacknowledged = group.appends
            case .written: unacknowledged = group.appends.filter { $0.ackMode == .durable }
            case .synced: unacknowledged = []
            }
            fail(error, unacknowledged: unacknowledged)
        }
    }

    /// Seals the active segment (its index files written and synced; its data was synced
    /// by the previous group) and creates the next one, synced with its directory before
    /// any data goes into it.
    private func roll(to baseOffset: Int64) throws(IOError) {
        let (sealed, builder) = state.withLock { state -> (SegmentState, SegmentSummaryBuilder?) in
            precondition(state.active.durableSize == state.active.size, "a segment is fully synced before the next is created")
            return (state.active, state.activeSummary)
        }
        // Sorting names and filling a Bloom filter: outside the lock appends take.
        let summary = builder?.summary()
        try trimPreallocation(sealed)
        try Self.writeIndexes(sealed, fileIO: fileIO, sync: true)
        if let summary {
            // Derived: a failure costs replays their skipping, not data.
            do {
                try fileIO.writeFileAtomically(SegmentSummary.path(directory: directory, baseOffset: sealed.baseOffset), summary.encoded())
            } catch {
                logger.warning("could not write a segment summary", metadata: ["segment": "\(sealed.baseOffset)", "error": "\(error)"])
            }
        }
        try writeSnapshot()
        let path = joinPath(directory, SegmentFileName.name(baseOffset: baseOffset, kind: .log))
        let file = try fileIO.open(path, mode: .createNew)
        do throws(IOError) {
            try file.dataSync()
            try fileIO.syncDirectory(directory)
        } catch {
            try? file.close()
            throw error
        }
        let segment = SegmentState(handle: SegmentHandle(directory: directory, baseOffset: baseOffset, file: file))
        state.withLock { state in
            state.active.isSealed = true
            state.segments.append(segment)
            if topicConfiguration.kind == .flip { state.activeSummary = SegmentSummaryBuilder() }
            state.statistics.segmentRollCount += 1
            state.bytesSinceCheckpoint = 0
        }
        logger.debug("rolled segment", metadata: ["baseOffset": "\(baseOffset)"])
    }

    /// Cuts the pre-written zeros after a segment's data, and syncs the new length.
    private func trimPreallocation(_ segment: SegmentState) throws(IOError) {
        guard segment.fileSize > segment.size else { return }
        try segment.handle.file.truncate(to: segment.size)
        try segment.handle.file.dataSync()
        state.withLock { state in
            if let index = state.segments.lastIndex(where: { $0.baseOffset == segment.baseOffset }) { state.segments[index].fileSize = segment.size }
        }
    }

    static let zeros = [UInt8](repeating: 0, count: 1 << 20)

    /// The group's batches in one write call at the end of the active segment; then, when
    /// less than half of `preallocationBytes` of pre-written space is left ahead, zeros up to
    /// `preallocationBytes` past the data (synced by the same fsync).
    private func write(_ group: Group) throws(IOError) {
        let (file, position, fileSize) = state.withLock { ($0.active.handle.file, $0.active.size, $0.active.fileSize) }
        var buffer: [UInt8]
        if group.appends.count == 1 {
            buffer = group.appends[0].bytes
        } else {
            buffer = []
            buffer.reserveCapacity(group.bytes)
            for append in group.appends { buffer.append(contentsOf: append.bytes) }
        }
        try file.writeAll(buffer, at: position)
        let dataEnd = position + Int64(group.bytes)
        var newFileSize = max(fileSize, dataEnd)
        // Extend only when less than half a chunk of zeros is left, by a whole chunk: the
        // file then grows once per chunk, and the fsyncs between find their pages written.
        if configuration.preallocationBytes > 0 && fileSize - dataEnd < Int64(configuration.preallocationBytes / 2) {
            let target = min(Int64(configuration.segmentBytes), dataEnd + Int64(configuration.preallocationBytes))
            while newFileSize < target {
                let count = Int(min(Int64(Self.zeros.count), target - newFileSize))
                try file.writeAll(count == Self.zeros.count ? Self.zeros : Array(Self.zeros[..<count]), at: newFileSize)
                newFileSize += Int64(count)
            }
        }
        state.withLock { state in
            state.active.fileSize = newFileSize
            if state.activeSummary != nil {
                for append in group.appends { state.activeSummary!.add(append.effects) }
            }
            var cursor = position
            for append in group.appends {
                state.active.recordWritten(
                    position: cursor, size: append.bytes.count, baseOffset: append.result.baseOffset,
                    nextOffset: append.result.lastOffset + 1, appendTime: append.result.appendTime,
                    indexIntervalBytes: configuration.indexIntervalBytes)
                cursor += Int64(append.bytes.count)
            }
            state.statistics.groupWriteCount += 1
        }
    }

    /// One fdatasync; then what was written is durable and visible to readers, and its
    /// replay-protection effects move to the durable state. Returns the active segment when
    /// a recovery checkpoint is due, and the retries that waited on the group's batches.
    private func sync(_ group: Group) throws(IOError) -> (SegmentState?, [(AppendOutcome, [AppendCompletion])]) {
        defer { wakeDurableWaiters() }
        let file = state.withLock { $0.active.handle.file }
        let started = MonotonicClock.nanoseconds()
        try file.dataSync()
        let elapsed = MonotonicClock.nanoseconds() - started
        if elapsed > 500_000_000 {
            logger.warning("slow fdatasync", metadata: ["milliseconds": "\(elapsed / 1_000_000)", "bytes": "\(group.bytes)"])
        }
        return state.withLock { state -> (SegmentState?, [(AppendOutcome, [AppendCompletion])]) in
            state.active.markDurable()
            var waiting: [(AppendOutcome, [AppendCompletion])] = []
            for append in group.appends {
                state.replay.applyDurable(append.effects)
                if let key = append.key, let completions = state.waiters.removeValue(forKey: key) { waiting.append((append.outcome, completions)) }
            }
            state.statistics.fsyncCount += 1
            state.statistics.fsyncNanosecondsTotal += elapsed
            state.statistics.fsyncNanosecondsMax = max(state.statistics.fsyncNanosecondsMax, elapsed)
            state.bytesSinceCheckpoint += group.bytes
            guard state.bytesSinceCheckpoint >= configuration.recoveryCheckpointIntervalBytes else { return (nil, waiting) }
            state.bytesSinceCheckpoint = 0
            state.statistics.checkpointCount += 1
            return (state.active, waiting)
        }
    }

    /// Turns the partition read-only (design decision 5) and refuses the group's appends not
    /// yet acknowledged and everything queued behind them.
    private func fail(_ error: IOError, unacknowledged: [PendingAppend]) {
        let failure = StorageError(.readOnly, "\(topic)/\(partition) is read-only after a failed write: \(error)")
        let (queued, waiters) = state.withLock { state -> ([PendingAppend], [AppendCompletion]) in
            let queued = state.commit.fail(failure)
            state.replay.dropPending()
            let waiters = state.waiters.values.flatMap { $0 }
            state.waiters.removeAll()
            return (queued, waiters)
        }
        logger.error("partition is read-only after an I/O error; restart to recover", metadata: ["error": "\(error)"])
        for append in unacknowledged + queued { append.completion?(.failure(failure)) }
        for waiter in waiters { waiter(.failure(failure)) }
        wakeDurableWaiters(all: true)
    }

    // MARK: Waiting for data

    /// Hands every batch (as stored) to `feed` once it is durable, in log order, before
    /// its acknowledgement, from the writer's thread; nil to stop. The batches of a topic's
    /// partitions may share one feed (each is tagged with its partition).
    public func feedDurableBatches(to feed: DurableBatchFeed?) {
        durableFeed.withLock { $0 = feed }
    }

    /// Calls `callback` once durable data reaches past `offset` (or the partition fails or
    /// closes); nil, without calling it, when that is so already. The id cancels it.
    public func notifyWhenDurable(beyond offset: Int64, _ callback: @escaping @Sendable () -> Void) -> UInt64? {
        state.withLock { state -> UInt64? in
            if state.durableEnd > offset || state.commit.isStopping { return nil }
            state.nextWaiterId += 1
            state.durableWaiters[state.nextWaiterId] = (offset, callback)
            return state.nextWaiterId
        }
    }

    /// Forgets a waiter (its wait timed out); true when it was still waiting.
    @discardableResult
    public func cancelDurableWait(_ id: UInt64) -> Bool {
        state.withLock { $0.durableWaiters.removeValue(forKey: id) != nil }
    }

    private func wakeDurableWaiters(all: Bool = false) {
        let callbacks = state.withLock { state -> [@Sendable () -> Void] in
            let end = state.durableEnd
            let ready = state.durableWaiters.filter { all || $0.value.offset < end }
            for id in ready.keys { state.durableWaiters[id] = nil }
            return ready.values.map(\.callback)
        }
        for callback in callbacks { callback() }
    }

    // MARK: Replay-protection snapshots

    /// Writes the durable replay-protection state as of the durable end (after expiring
    /// idle producers), atomically, and keeps only the two newest snapshots. Called by the
    /// writer at a roll (the previous segment fully synced) and at clean shutdown.
    private func writeSnapshot() throws(IOError) {
        let now = clock.nowMilliseconds()
        let (bytes, offset) = state.withLock { state -> ([UInt8], Int64) in
            state.statistics.producersExpiredCount += state.replay.expireProducers(now: now)
            state.statistics.snapshotCount += 1
            return (ReplaySnapshot.encode(state.replay, offset: state.durableEnd), state.durableEnd)
        }
        try fileIO.writeFileAtomically(joinPath(directory, ReplaySnapshot.fileName(offset: offset)), bytes)
        let older = try fileIO.list(directory).compactMap(ReplaySnapshot.offset(ofFileName:)).filter { $0 < offset }.sorted()
        for stale in older.dropLast() { try fileIO.remove(joinPath(directory, ReplaySnapshot.fileName(offset: stale))) }
    }

    /// Replay-protection state after recovery: the newest readable snapshot at or below
    /// the log's end (snapshots past it describe batches a crash took, and are removed),
    /// then every batch after it, read from the log.
    static func rebuildReplayState(directory: String, segments: [SegmentState], isFlipTopic: Bool, environment: StorageEnvironment) throws(StorageError) -> ReplayState {
        let configuration = environment.configuration
        var replay = ReplayState(
            producerExpirationMilliseconds: configuration.producerExpirationMilliseconds,
            producersTrackedMax: configuration.producersTrackedMax, resourcesTrackedMax: configuration.resourcesTrackedMax)
        let end = segments[segments.count - 1].nextOffset
        let fileIO = environment.fileIO
        var from = segments[0].baseOffset
        do {
            let offsets = try fileIO.list(directory).compactMap(ReplaySnapshot.offset(ofFileName:)).sorted(by: >)
            for offset in offsets {
                let path = joinPath(directory, ReplaySnapshot.fileName(offset: offset))
                if offset > end || offset < from {
                    try fileIO.remove(path)
                    continue
                }
                var candidate = replay
                do {
                    _ = try ReplaySnapshot.decode(try fileIO.readWholeFile(path, bytesMax: Limits.snapshotBytesMax), into: &candidate, name: path)
                    replay = candidate
                    from = offset
                    break
                } catch {
                    environment.logger.warning("replay-protection snapshot is unreadable; using an older one or the log", metadata: ["path": "\(path)", "error": "\(error)"])
                }
            }
        } catch {
            throw StorageError.io(error, "reading replay-protection snapshots")
        }
        for segment in segments where segment.nextOffset > from {
            let start: (position: Int64, offset: Int64) = segment.baseOffset <= from ? segment.startPosition(for: from) : (0, segment.baseOffset)
            var scanner = BatchScanner(file: segment.handle.file, from: start.position, offset: start.offset, endPosition: segment.size)
            while let batch = try scanner.nextForReader(path: segment.handle.logPath, context: "rebuilding replay protection") {
                if batch.header.lastOffset < from { continue }
                do {
                    try replay.applyStored(scanner.bytes(of: batch), header: batch.header, isFlipTopic: isFlipTopic)
                } catch {
                    throw StorageError(.corruption, "\(segment.handle.logPath): batch at byte \(batch.position) does not decode: \(error)")
                }
            }
        }
        replay.expireProducers(now: environment.clock.nowMilliseconds())
        return replay
    }

    // MARK: Closing

    /// Stops taking appends, lets the writer finish what is queued, and, unless the
    /// partition failed, writes the active segment's index files and the clean-shutdown
    /// record, all synced. Then closes the files.
    public func close(completion: @escaping @Sendable (Result<Void, StorageError>) -> Void) {
        let request = state.withLock { state -> GroupCommit<PendingAppend>.CloseRequest in
            let request = state.commit.requestClose()
            if request != .alreadyClosed { state.closeCompletions.append(completion) }
            return request
        }
        switch request {
        case .alreadyClosed: completion(.success(()))
        case .scheduleWriter: scheduleWriter()
        case .writerWillSee: break
        }
    }

    public func close() async throws(StorageError) {
        let result = await withUnsafeContinuation { (continuation: UnsafeContinuation<Result<Void, StorageError>, Never>) in
            close { continuation.resume(returning: $0) }
        }
        try result.get()
    }

    private func finishClose() {
        let (segments, failure) = state.withLock { ($0.segments, $0.commit.failure) }
        var result: Result<Void, StorageError> = .success(())
        if failure == nil {
            let active = segments[segments.count - 1]
            do throws(IOError) {
                try trimPreallocation(active)
                try Self.writeIndexes(active, fileIO: fileIO, sync: true)
                try writeSnapshot()
                let record = PartitionStateFile(
                    clean: true, groupWriteBytesMax: configuration.groupWriteBytesMax,
                    lastSegmentBaseOffset: active.baseOffset, endPosition: active.size, nextOffset: active.nextOffset)
                try fileIO.writeFileAtomically(joinPath(directory, PartitionStateFile.name), record.encoded())
            } catch {
                result = .failure(StorageError.io(error, "\(topic)/\(partition): clean shutdown"))
            }
        }
        for segment in segments { try? segment.handle.file.close() }
        let completions = state.withLock { state -> [@Sendable (Result<Void, StorageError>) -> Void] in
            state.commit.finishedClosing()
            defer { state.closeCompletions = [] }
            return state.closeCompletions
        }
        for completion in completions { completion(result) }
        wakeDurableWaiters(all: true)
    }

    // MARK: Reading

    public var offsets: PartitionOffsets {
        state.withLock { PartitionOffsets(start: $0.startOffset, durableEnd: $0.durableEnd, next: $0.nextOffset) }
    }

    public var statistics: PartitionStatistics { state.withLock { $0.statistics } }

    /// Why the partition is read-only, if it is.
    public var failure: StorageError? { state.withLock { $0.commit.failure } }

    /// Where a read goes: the segment holding the offset and those after it, with how far
    /// each may be read (its synced size).
    private struct ReadPlan {
        var parts: [(handle: SegmentHandle, start: Int64, startOffset: Int64, limit: Int64)]
        var durableEnd: Int64
    }

    private func plan(from offset: Int64) throws(StorageError) -> ReadPlan? {
        try state.withLock { (state) throws(StorageError) -> ReadPlan? in
            if state.commit.lifecycle == .closed { throw StorageError(.closed, "\(topic)/\(partition) is closed") }
            if offset < state.startOffset || offset > state.nextOffset {
                throw StorageError(.offsetOutOfRange, "\(topic)/\(partition): offset \(offset) is outside \(state.startOffset)...\(state.nextOffset)")
            }
            if offset >= state.durableEnd { return nil }
            var index = state.segments.count - 1
            while state.segments[index].baseOffset > offset { index -= 1 }
            let first = state.segments[index].startPosition(for: offset)
            var parts = [(state.segments[index].handle, first.position, first.offset, state.segments[index].durableSize)]
            for next in state.segments[(index + 1)...] where next.durableSize > 0 {
                parts.append((next.handle, 0, next.baseOffset, next.durableSize))
            }
            return ReadPlan(parts: parts, durableEnd: state.durableEnd)
        }
    }

    /// Whole batches from the one holding `offset`, at most `maxBytes` of them (the first
    /// one whole even when it is larger), never past the last synced offset. Each batch is
    /// checked as `BatchScanner` checks it; a bad one is reported as corruption naming the
    /// file, position and offset, never returned. Blocking: call off the event loops.
    public func read(from offset: Int64, maxBytes: Int) throws(StorageError) -> ReadResult {
        let maxBytes = min(max(maxBytes, 1), Limits.readBytesMax)
        guard let plan = try plan(from: offset) else {
            return ReadResult(bytes: [], batchCount: 0, nextOffset: offset, durableEndOffset: offsets.durableEnd)
        }
        var output: [UInt8] = []
        var count = 0
        var nextOffset = offset
        let chunkBytes = min(maxBytes, 1 << 20) + configuration.indexIntervalBytes
        parts: for part in plan.parts {
            var scanner = BatchScanner(file: part.handle.file, from: part.start, offset: part.startOffset, endPosition: part.limit, chunkBytes: chunkBytes)
            while let batch = try scanner.nextForReader(path: part.handle.logPath, context: "reading from offset \(offset)") {
                if batch.header.lastOffset < offset { continue }
                if count > 0 && output.count + batch.size > maxBytes { break parts }
                scanner.appendBytes(of: batch, to: &output)
                count += 1
                nextOffset = batch.header.nextOffset
            }
        }
        return ReadResult(bytes: output, batchCount: count, nextOffset: nextOffset, durableEndOffset: plan.durableEnd)
    }

    /// The first offset whose append time is at or after `time`, among synced data; nil when
    /// no synced batch is that late.
    public func offset(atOrAfterTime time: Int64) throws(StorageError) -> Int64? {
        let found = try state.withLock { (state) throws(StorageError) -> (SegmentHandle, Int64, Int64, Int64)? in
            if state.commit.lifecycle == .closed { throw StorageError(.closed, "\(topic)/\(partition) is closed") }
            guard let segment = state.segments.first(where: { $0.durableMaxTimestamp >= time }) else { return nil }
            let start = segment.startPosition(forTime: time)
            return (segment.handle, start.position, start.offset, segment.durableSize)
        }
        guard let (handle, start, startOffset, limit) = found else { return nil }
        var scanner = BatchScanner(file: handle.file, from: start, offset: startOffset, endPosition: limit, chunkBytes: 64 << 10)
        while let batch = try scanner.nextForReader(path: handle.logPath, context: "looking up append time \(time)") {
            if batch.header.maxTimestamp >= time { return batch.header.baseOffset }
        }
        return nil
    }
}
