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
    let state: Mutex<State>
    /// Where the writer hands each durable batch (the server's live Pauli-Z ingest), if
    /// anywhere: a feed that never waits (see `DurableBatchFeed`). In a class, not a
    /// closure: a closure kept directly in a Mutex is re-wrapped in a conversion thunk on
    /// every `withLock` (measured: 80% of the server's time after a minute of appends).
    let durableFeed = Mutex<DurableBatchFeed?>(nil)

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

    init(topic: TopicConfiguration, partition: Int, directory: String, environment: StorageEnvironment, registry: ProducerRegistry?, segments: [SegmentState], replay: ReplayState, report: RecoveryReport) {
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
        do {
            return try createSegmentFile(directory: directory, baseOffset: baseOffset, fileIO: fileIO)
        } catch {
            throw StorageError.io(error, "creating segment \(joinPath(directory, SegmentFileName.name(baseOffset: baseOffset, kind: .log)))")
        }
    }

    /// A new, empty segment file, synced with its directory before any data goes into it
    /// (at open for an empty partition, and at every roll).
    static func createSegmentFile(directory: String, baseOffset: Int64, fileIO: any FileIO) throws(IOError) -> SegmentState {
        let file = try fileIO.open(joinPath(directory, SegmentFileName.name(baseOffset: baseOffset, kind: .log)), mode: .createNew)
        do {
            try file.dataSync()
            try fileIO.syncDirectory(directory)
        } catch {
            try? file.close()
            throw error
        }
        return SegmentState(handle: SegmentHandle(directory: directory, baseOffset: baseOffset, file: file))
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
}
