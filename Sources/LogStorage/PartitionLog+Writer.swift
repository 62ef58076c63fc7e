import LogFormat
import LogIO
import Logging

// The writer's I/O: group writes, fsyncs and acknowledgements in log order, segment
// rolls, the failure that makes a partition read-only, and the clean close.
extension PartitionLog {
    // MARK: The writer

    func scheduleWriter() {
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
            case .group(let appends, let bytes, let roll):
                writeAndSync(Group(appends: appends, bytes: bytes, roll: roll))
                let again = state.withLock { $0.commit.groupDone() }
                if !again { return }
            }
        }
        scheduleWriter()
    }

    /// How far a group got: which of its appends are acknowledged.
    private enum Progress {
        case nothingWritten
        /// Written: `written` appends acknowledged.
        case written
        /// Synced: every append acknowledged.
        case synced
    }

    private func takeGroup() -> GroupCommit<PendingAppend>.Step {
        let now = clock.nowMilliseconds()
        let (step, refused, failure) = state.withLock { state -> (GroupCommit<PendingAppend>.Step, [PendingAppend], StorageError?) in
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
            if case .group(_, let bytes, let roll) = step {
                precondition(Int64(bytes) <= (roll ? Int64(configuration.segmentBytes) : Int64(configuration.segmentBytes) - active.size), "a group write must fit in its segment")
            }
            return (step, refused, state.commit.failure)
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
                feed.offer(partition: partition, group.appends.lazy.map(\.bytes))
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
        let segment = try Self.createSegmentFile(directory: directory, baseOffset: baseOffset, fileIO: fileIO)
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
}
