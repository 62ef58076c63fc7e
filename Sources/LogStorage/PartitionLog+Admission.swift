import LogFormat
import LogIO

// Admission: the checks an append passes before it is queued (format, replay protection,
// flip rules), the decision, and the enqueue that assigns its offsets.
extension PartitionLog {
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
}
