import LogFormat

/// What happened to an append that was not an error.
public enum AppendOutcome: Equatable, Sendable {
    /// Stored at these offsets.
    case committed(AppendResult)
    /// A retry of a batch already committed: nothing stored again; its original offsets.
    case duplicate(AppendResult)
    /// Refused as a whole, nothing of it stored: every offending record with its reason.
    /// For an idempotent producer the refusal uses up the batch's sequence numbers and is
    /// remembered like a commit (a retry gets the same answer).
    case refused([RecordRefusal])
    /// The producer epoch is older than the producer's current one: a fenced incarnation.
    case fenced(String)
    /// The batch's sequence does not follow the producer's last one (a gap, or an old
    /// batch outside the retry window). Nothing stored.
    case outOfOrder(String)
    /// The partition has no state for this producer (it expired, or the id was never
    /// handed out): re-initialise and resend. Nothing stored.
    case unknownProducer(String)

    /// The offsets, for a committed or duplicate batch.
    public var result: AppendResult? {
        switch self {
        case .committed(let result), .duplicate(let result): return result
        default: return nil
        }
    }
}

/// One of the last batches a producer sent to a partition, kept to answer retries.
struct ProducerBatch: Equatable {
    var epoch: Int16
    var firstSequence: Int32
    var lastSequence: Int32
    /// What a retry of it is answered: committed (as duplicate) or refused.
    var outcome: AppendOutcome
    /// Append time, for expiry.
    var appendTime: Int64
}

/// A producer's state in one partition: its current epoch and last batches (oldest first).
struct ProducerEntry: Equatable {
    var epoch: Int16
    var batches: [ProducerBatch]
    var lastAppendTime: Int64

    var lastSequence: Int32 { batches.last?.lastSequence ?? -1 }

    /// Adds a batch, starting over at a new epoch and keeping the last few.
    mutating func record(_ batch: ProducerBatch) {
        if epoch != batch.epoch {
            epoch = batch.epoch
            batches.removeAll(keepingCapacity: true)
        }
        if batches.count == Limits.producerBatchWindow { batches.removeFirst() }
        batches.append(batch)
        lastAppendTime = max(lastAppendTime, batch.appendTime)
    }
}

/// The last accepted `(epoch, seq)` of a resource.
struct ResourceMark: Equatable, Comparable {
    var epoch: Int64
    var seq: Int64

    static func < (a: ResourceMark, b: ResourceMark) -> Bool { (a.epoch, a.seq) < (b.epoch, b.seq) }
}

/// What an accepted append does to replay-protection state once it is durable.
struct AppendEffects {
    var producer: (id: Int64, batch: ProducerBatch)?
    /// The last mark per resource in the batch, for flip batches.
    var resources: [(resource: String, mark: ResourceMark)] = []
    /// A committed flip batch's events and the range of their times (segment summaries).
    var eventCount: Int64 = 0
    var eventTimeMin: Int64 = 0
    var eventTimeMax: Int64 = 0
}

/// Identifies a producer batch for retries waiting on it.
struct PendingBatchKey: Hashable {
    var producerId: Int64
    var epoch: Int16
    var firstSequence: Int32
}

/// Replay protection of one partition (design decision 8): idempotent-producer sequence
/// state and, for flip topics, per-resource fencing. A value type with no I/O: the
/// partition calls `checkProducer` and `checkRecords` under its lock before anything
/// changes, `admit` for what it queues, `applyDurable` after the fsync that covers it.
///
/// Two layers: `durable` holds only what synced batches did (snapshots are taken from it;
/// it is rebuilt from the log on open); `pending` holds batches accepted into the writer's
/// queue, so pipelined batches are judged as if the earlier ones had landed.
struct ReplayState {
    var producers: [Int64: ProducerEntry] = [:]
    var resources: [String: ResourceMark] = [:]
    /// Per producer, its queued batches in order.
    var pendingProducers: [Int64: [ProducerBatch]] = [:]
    /// Per resource, the last queued mark and how many queued batches still carry it.
    var pendingResources: [String: (mark: ResourceMark, count: Int)] = [:]
    var expiredProducerCount = 0

    let producerExpirationMilliseconds: Int64
    let producersTrackedMax: Int
    let resourcesTrackedMax: Int

    init(producerExpirationMilliseconds: Int64, producersTrackedMax: Int = Limits.partitionProducersTrackedMax, resourcesTrackedMax: Int = Limits.partitionResourcesTrackedMax) {
        self.producerExpirationMilliseconds = producerExpirationMilliseconds
        self.producersTrackedMax = producersTrackedMax
        self.resourcesTrackedMax = resourcesTrackedMax
    }

    // MARK: Checks

    enum ProducerDecision: Equatable {
        /// A new batch in sequence: its first and last sequence numbers.
        case accept(first: Int32, last: Int32)
        /// A retry of a batch whose outcome is known.
        case answered(AppendOutcome)
        /// A retry of a batch still queued: wait for its outcome.
        case waitFor(PendingBatchKey)
        /// Refused before anything changes.
        case refused(AppendOutcome)
    }

    /// Kafka's idempotent-producer rules, against the state including queued batches.
    func checkProducer(
        id: Int64, epoch: Int16, baseSequence: Int32, recordCount: Int32, registry: ProducerRegistry.Status,
        inFlightMax: Int, now: Int64
    ) -> ProducerDecision {
        let last = lastSequence(baseSequence, recordCount)
        /// A limit refuses the whole batch, every record, without using its sequence numbers.
        func limitReached(_ message: String) -> ProducerDecision {
            .refused(.refused((0..<Int(recordCount)).map { RecordRefusal(index: $0, reason: .wait, message: message) }))
        }
        switch registry {
        case .unknown:
            return .refused(.unknownProducer("producer id \(id) was never handed out by this store; initialise the producer"))
        case .retired:
            return .refused(.fenced("producer id \(id) was retired when its name moved to a new id; this incarnation is fenced"))
        case .named(let current) where epoch < current:
            return .refused(.fenced("producer \(id) epoch \(epoch) is older than the current epoch \(current): a newer incarnation started"))
        case .named(let current) where epoch > current:
            return .refused(.unknownProducer("producer \(id) epoch \(epoch) was never handed out (current \(current))"))
        case .anonymous where epoch != 0:
            return .refused(.unknownProducer("producer \(id) is anonymous: its epoch is 0, not \(epoch)"))
        default:
            break
        }
        let pending = pendingProducers[id] ?? []
        let durable = producers[id].flatMap { isExpired($0, now: now) ? nil : $0 }
        // The common case first: the next sequence of the current epoch. It cannot also be
        // a retry (sequence ranges within an epoch are distinct), so no window is needed.
        if let newest = pending.last ?? durable?.batches.last, epoch == (pending.last?.epoch ?? durable!.epoch),
           baseSequence == (newest.lastSequence == Int32.max ? 0 : newest.lastSequence + 1), pending.count < inFlightMax {
            return .accept(first: baseSequence, last: last)
        }
        let current: (epoch: Int16, lastSequence: Int32, batches: [ProducerBatch])?
        if let newest = pending.last {
            // The window holds the current epoch's batches only: queued batches may span
            // an epoch change, and sequence numbers restart at 0 in each epoch.
            let window = (((durable?.epoch == newest.epoch ? durable?.batches : nil) ?? []) + pending).filter { $0.epoch == newest.epoch }
            current = (newest.epoch, newest.lastSequence, Array(window.suffix(Limits.producerBatchWindow)))
        } else if let durable {
            current = (durable.epoch, durable.lastSequence, durable.batches)
        } else {
            current = nil
        }
        guard let current else {
            if baseSequence != 0 {
                return .refused(.unknownProducer("partition has no state for producer \(id) (it expired or never wrote here) and the batch starts at sequence \(baseSequence), not 0; re-initialise and resend"))
            }
            if producers.count + pendingProducers.count >= producersTrackedMax && producers[id] == nil {
                return limitReached("limit reached: the partition tracks \(producersTrackedMax) producers (partitionProducersTrackedMax)")
            }
            return .accept(first: baseSequence, last: last)
        }
        if epoch < current.epoch {
            return .refused(.fenced("producer \(id) epoch \(epoch) is older than epoch \(current.epoch) seen on this partition"))
        }
        if epoch > current.epoch {
            return baseSequence == 0
                ? .accept(first: 0, last: last)
                : .refused(.outOfOrder("producer \(id) starts epoch \(epoch) at sequence \(baseSequence), not 0"))
        }
        if let match = current.batches.first(where: { $0.epoch == epoch && $0.firstSequence == baseSequence && $0.lastSequence == last }) {
            if pending.contains(where: { $0.epoch == epoch && $0.firstSequence == baseSequence }) {
                return .waitFor(PendingBatchKey(producerId: id, epoch: epoch, firstSequence: baseSequence))
            }
            return .answered(match.outcome.asRetryAnswer)
        }
        let expected = current.lastSequence == Int32.max ? 0 : current.lastSequence + 1
        if baseSequence != expected {
            return .refused(.outOfOrder("producer \(id) epoch \(epoch): expected sequence \(expected), got \(baseSequence)"))
        }
        if pending.count >= inFlightMax {
            return limitReached("limit reached: at most \(inFlightMax) batches in flight per producer and partition on this topic")
        }
        return .accept(first: baseSequence, last: last)
    }

    /// The flip records' fencing: each record's `(epoch, seq)` must exceed its resource's
    /// last accepted one (queued included) and any earlier accepted record of the batch.
    /// Records already refused (`refusals`, by index) are skipped. Returns the refusals
    /// (the given ones and new ones, by index) and the last mark per resource.
    func checkRecords(_ events: [(index: Int, event: FlipEvent)], refusals given: [RecordRefusal]) -> (refusals: [RecordRefusal], marks: [(String, ResourceMark)]) {
        var refusals = given
        var refusedIndexes = Set(given.map(\.index))
        var batchMarks: [String: ResourceMark] = [:]
        var order: [String] = []
        var newResources = 0
        for (index, event) in events where !refusedIndexes.contains(index) {
            let mark = ResourceMark(epoch: event.epoch, seq: event.seq)
            let previous = batchMarks[event.resource] ?? pendingResources[event.resource]?.mark ?? resources[event.resource]
            if let previous {
                if mark <= previous {
                    let reason: RecordRefusal.Reason = mark.epoch < previous.epoch ? .fenced : .replayed
                    refusals.append(RecordRefusal(index: index, reason: reason, message: "resource \(event.resource): (epoch \(mark.epoch), seq \(mark.seq)) is not after (epoch \(previous.epoch), seq \(previous.seq))"))
                    refusedIndexes.insert(index)
                    continue
                }
            } else {
                if resources.count + pendingResources.count + newResources >= resourcesTrackedMax {
                    refusals.append(RecordRefusal(index: index, reason: .refused, message: "limit reached: the partition tracks \(resourcesTrackedMax) resources (partitionResourcesTrackedMax); resource \(event.resource) is new"))
                    refusedIndexes.insert(index)
                    continue
                }
                newResources += 1
            }
            if batchMarks[event.resource] == nil { order.append(event.resource) }
            batchMarks[event.resource] = mark
        }
        return (refusals.sorted { $0.index < $1.index }, order.map { ($0, batchMarks[$0]!) })
    }

    // MARK: Changes

    /// Records a queued batch's effects in the pending layer.
    mutating func admit(_ effects: AppendEffects) {
        if let producer = effects.producer {
            pendingProducers[producer.id, default: []].append(producer.batch)
        }
        for (resource, mark) in effects.resources {
            let count = pendingResources[resource]?.count ?? 0
            pendingResources[resource] = (mark, count + 1)
        }
    }

    /// Moves a batch's effects from the pending layer to the durable one, after the fsync
    /// that covers it. Batches are applied in log order.
    mutating func applyDurable(_ effects: AppendEffects) {
        if let producer = effects.producer {
            applyProducer(id: producer.id, batch: producer.batch)
            // In place: copying the queue out and back would copy it on every append.
            if pendingProducers[producer.id]?.isEmpty == false {
                pendingProducers[producer.id]!.removeFirst()
                if pendingProducers[producer.id]!.isEmpty { pendingProducers[producer.id] = nil }
            }
        }
        for (resource, mark) in effects.resources {
            resources[resource] = mark
            if let pending = pendingResources[resource] {
                pendingResources[resource] = pending.count > 1 ? (pending.mark, pending.count - 1) : nil
            }
        }
    }

    /// Adds a producer batch to the durable state (also used when rebuilding from the log).
    mutating func applyProducer(id: Int64, batch: ProducerBatch) {
        // Mutated in place through the dictionary's default subscript: taking the entry out
        // and storing it back would copy its batch array on every append.
        producers[id, default: ProducerEntry(epoch: batch.epoch, batches: [], lastAppendTime: batch.appendTime)].record(batch)
    }

    /// Forgets the pending layer (the partition failed; the log decides on reopen).
    mutating func dropPending() {
        pendingProducers.removeAll()
        pendingResources.removeAll()
    }

    func isExpired(_ entry: ProducerEntry, now: Int64) -> Bool {
        now - entry.lastAppendTime > producerExpirationMilliseconds
    }

    /// Drops producers idle longer than the expiration (none with queued batches); returns
    /// how many.
    @discardableResult
    mutating func expireProducers(now: Int64) -> Int {
        let expired = producers.filter { isExpired($0.value, now: now) && pendingProducers[$0.key] == nil }.map(\.key)
        for id in expired { producers[id] = nil }
        expiredProducerCount += expired.count
        return expired.count
    }
}

extension AppendOutcome {
    /// How a retry of a batch with this outcome is answered.
    var asRetryAnswer: AppendOutcome {
        if case .committed(let result) = self { return .duplicate(result) }
        return self
    }
}

/// The last sequence number of a batch, wrapping past Int32.max to 0 as Kafka's do.
func lastSequence(_ base: Int32, _ count: Int32) -> Int32 {
    let last = Int64(base) + Int64(count) - 1
    return Int32(last > Int64(Int32.max) ? last - Int64(Int32.max) - 1 : last)
}
