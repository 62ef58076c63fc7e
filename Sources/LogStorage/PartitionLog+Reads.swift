import LogFormat
import LogIO

// Reads of durable data: offsets, batches from an offset, offsets by time, and waits
// for durable data (long polls, the live Pauli-Z feed).
extension PartitionLog {
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

    /// Readers waiting for durable data (parked long polls).
    public var durableWaiterCount: Int { state.withLock { $0.durableWaiters.count } }

    /// Forgets a waiter (its wait timed out); true when it was still waiting.
    @discardableResult
    public func cancelDurableWait(_ id: UInt64) -> Bool {
        state.withLock { $0.durableWaiters.removeValue(forKey: id) != nil }
    }

    func wakeDurableWaiters(all: Bool = false) {
        let callbacks = state.withLock { state -> [@Sendable () -> Void] in
            let end = state.durableEnd
            let ready = state.durableWaiters.filter { all || $0.value.offset < end }
            for id in ready.keys { state.durableWaiters[id] = nil }
            return ready.values.map(\.callback)
        }
        for callback in callbacks { callback() }
    }
}
