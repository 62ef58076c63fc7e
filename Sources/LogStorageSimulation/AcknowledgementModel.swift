import LogFormat
import LogSimulation
import LogStorage
import Synchronization

/// What the simulation has submitted and what the partition has acknowledged, and what
/// must therefore be stored. The partition under test calls `complete` from its writer;
/// everything else is called by the simulation. A broken rule is kept as a violation and
/// thrown at the next `takeViolation`.
final class AcknowledgementModel: Sendable {
    enum Acknowledgement: Equatable {
        case pending
        case refused
        case written
        case durable
        /// Recovered after a reopen: stored and synced, so it must stay.
        case recovered
    }

    struct Entry {
        var id: Int
        var ackMode: AckMode
        var original: [UInt8]
        /// Set once the partition accepted the batch.
        var baseOffset: Int64?
        var expected: [UInt8]?
        var acknowledgement = Acknowledgement.pending
    }

    struct State {
        var entries: [Int: Entry] = [:]
        var byOffset: [Int64: Int] = [:]
        var nextId = 0
        var lastDurableAckOffset: Int64 = -1
        var lastAppendTime: Int64 = -1
        var durableEndSeen: Int64 = 0
        var violation: String?
        var durableAckCount = 0
        var writtenAckCount = 0
    }

    private let state = Mutex(State())

    var lastAppendTime: Int64 { state.withLock { $0.lastAppendTime } }
    var ackCounts: (durable: Int, written: Int) { state.withLock { ($0.durableAckCount, $0.writtenAckCount) } }

    var durableEndSeen: Int64 {
        get { state.withLock { $0.durableEndSeen } }
        set { state.withLock { $0.durableEndSeen = newValue } }
    }

    func submit(batch: [UInt8], ackMode: AckMode) -> Int {
        state.withLock { state in
            let id = state.nextId
            state.nextId += 1
            state.entries[id] = Entry(id: id, ackMode: ackMode, original: batch)
            return id
        }
    }

    /// The partition took the batch at `baseOffset`; it must be stored stamped with that
    /// offset and the append time the model expects.
    func accepted(_ id: Int, baseOffset: Int64, appendTime: Int64) throws(SimulationError) {
        try state.withLock { (state) throws(SimulationError) in
            guard var entry = state.entries[id] else { return }
            var expected = entry.original
            RecordBatchStamp.stamp(&expected, baseOffset: baseOffset, appendTime: appendTime)
            entry.baseOffset = baseOffset
            entry.expected = expected
            state.entries[id] = entry
            if let other = state.byOffset[baseOffset], state.entries[other]?.acknowledgement != .refused {
                throw SimulationError("offset \(baseOffset) was given to two live batches")
            }
            state.byOffset[baseOffset] = id
            state.lastAppendTime = appendTime
        }
    }

    /// The partition's completion for an append. Without producer ids on a raw topic the
    /// only success is `committed`.
    func complete(_ id: Int, _ result: Result<AppendOutcome, StorageError>) {
        state.withLock { state in
            guard var entry = state.entries[id] else { return }
            switch result {
            case .failure:
                if entry.acknowledgement == .pending { entry.acknowledgement = .refused }
            case .success(let outcome):
                guard case .committed(let appended) = outcome else {
                    state.violation = state.violation ?? "append \(id) was answered \(outcome), but plain appends can only be committed"
                    return
                }
                if entry.ackMode == .none { break }
                if entry.acknowledgement != .pending {
                    state.violation = state.violation ?? "append \(id) was completed twice"
                }
                if let baseOffset = entry.baseOffset, baseOffset != appended.baseOffset {
                    state.violation = state.violation ?? "append \(id) acknowledged at offset \(appended.baseOffset), accepted at \(baseOffset)"
                }
                if entry.ackMode == .durable {
                    if appended.baseOffset <= state.lastDurableAckOffset {
                        state.violation = state.violation ?? "durable ack for offset \(appended.baseOffset) came after the one for \(state.lastDurableAckOffset): not in log order"
                    }
                    state.lastDurableAckOffset = appended.baseOffset
                    entry.acknowledgement = .durable
                    state.durableAckCount += 1
                } else {
                    entry.acknowledgement = .written
                    state.writtenAckCount += 1
                }
            }
            state.entries[id] = entry
        }
    }

    func takeViolation() throws(SimulationError) {
        if let violation = state.withLock({ state -> String? in
            defer { state.violation = nil }
            return state.violation
        }) {
            throw SimulationError(violation)
        }
    }

    /// Completions of the dead process never come. A process crash keeps what the kernel
    /// was given, so batches acknowledged as written must then survive like durable ones;
    /// a power loss may take them.
    func crashed(_ kind: SimulatedDisk.CrashKind) {
        state.withLock { state in
            for (id, entry) in state.entries {
                if entry.acknowledgement == .pending { state.entries[id]?.acknowledgement = .refused }
                if entry.acknowledgement == .written && kind == .process { state.entries[id]?.acknowledgement = .durable }
            }
        }
    }

    /// A batch a read returned must be exactly the one the model expects at its offset.
    func verifyStored(_ bytes: [UInt8], header: RecordBatchHeader) throws(SimulationError) {
        try state.withLock { (state) throws(SimulationError) in
            guard let id = state.byOffset[header.baseOffset], let entry = state.entries[id], let expected = entry.expected else {
                throw SimulationError("offset \(header.baseOffset) is stored but no batch was accepted there")
            }
            if bytes != expected {
                throw SimulationError("the batch at offset \(header.baseOffset) differs from the one accepted there (append \(id), \(entry.ackMode))")
            }
        }
    }

    /// After a reopen: the stored log must hold every batch that had to survive, and only
    /// accepted batches, exactly. Then batches past the end are forgotten (they never
    /// happened) and everything stored counts as recovered.
    func reconcile(stored: [(header: RecordBatchHeader, bytes: [UInt8])], end: Int64) throws(SimulationError) {
        for batch in stored { try verifyStored(batch.bytes, header: batch.header) }
        try state.withLock { (state) throws(SimulationError) in
            var expectedOffset = stored.first?.header.baseOffset ?? end
            for batch in stored {
                if batch.header.baseOffset != expectedOffset {
                    throw SimulationError("offsets are not dense: batch at \(batch.header.baseOffset) follows offset \(expectedOffset - 1)")
                }
                expectedOffset = batch.header.nextOffset
            }
            if expectedOffset != end { throw SimulationError("the log reads to offset \(expectedOffset) but says it ends at \(end)") }
            for entry in state.entries.values.sorted(by: { $0.id < $1.id }) {
                guard let baseOffset = entry.baseOffset else { continue }
                let mustSurvive = entry.acknowledgement == .durable || entry.acknowledgement == .recovered
                if mustSurvive && baseOffset >= end {
                    throw SimulationError("batch at offset \(baseOffset), acknowledged \(entry.acknowledgement), is missing after reopen (log ends at \(end))")
                }
            }
            for (id, entry) in state.entries {
                guard let baseOffset = entry.baseOffset else { continue }
                if baseOffset >= end {
                    state.entries[id] = nil
                    if state.byOffset[baseOffset] == id { state.byOffset[baseOffset] = nil }
                } else if state.byOffset[baseOffset] == id {
                    state.entries[id]?.acknowledgement = .recovered
                }
            }
            state.lastDurableAckOffset = end - 1
            state.lastAppendTime = stored.last?.header.maxTimestamp ?? -1
        }
    }
}
