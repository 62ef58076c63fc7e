import LogFormat
import LogIO
import LogSimulation
import LogStorage
import Logging
import Synchronization

/// The seeded model-based simulation of replay protection (design decision 8). Clients
/// play idempotent producers on one partition of a raw or a flip topic: they send new
/// batches, retry random earlier ones, re-initialise (a new epoch) while their old
/// incarnation keeps sending as a zombie, and, on flip topics, emit stale events; the
/// partition crashes, loses power mid-write, fails fsyncs, and reopens.
///
/// The model is an independent statement of the rules over plain lists. For every append
/// it says the outcome the partition must give: committed at the offsets and append time
/// it computes, duplicate with the original offsets, refused with exactly these records and
/// reasons, fenced, out of order, unknown producer; a retry of a queued batch gets its
/// original's outcome. After every reopen it reads the log and requires: each logical
/// batch at most once; every batch acknowledged durable present at its offsets; per
/// producer and epoch, sequence ranges contiguous from 0 (refusals included); per resource,
/// `(epoch, seq)` strictly increasing. A retry after a crash is a duplicate with its
/// original offsets exactly when the batch was committed before the crash.
public struct ProducerSimulation {
    public struct Summary: Sendable, Equatable {
        public var committed = 0
        public var duplicates = 0
        public var refused = 0
        public var fenced = 0
        public var outOfOrder = 0
        public var unknownProducer = 0
        public var failures = 0
        public var crashes = 0
        public var retriesAfterCrash = 0

        public init() {}

        public mutating func add(_ other: Summary) {
            committed += other.committed
            duplicates += other.duplicates
            refused += other.refused
            fenced += other.fenced
            outOfOrder += other.outOfOrder
            unknownProducer += other.unknownProducer
            failures += other.failures
            crashes += other.crashes
            retriesAfterCrash += other.retriesAfterCrash
        }
    }

    /// A batch a client built: the same bytes are sent again on a retry.
    struct SentBatch {
        var number: Int
        var client: Int
        var identity: ProducerIdentity
        var first: Int32
        var last: Int32
        var events: [FlipEvent]
        var bytes: [UInt8]
    }

    /// A batch the partition took (durable or queued): what a retry of it is answered.
    struct Accepted {
        var number: Int
        var epoch: Int16
        var first: Int32
        var last: Int32
        var outcome: AppendOutcome
        var durable: Bool
        var marks: [(String, ResourceMarkModel)]
    }

    struct ResourceMarkModel: Comparable {
        var epoch: Int64
        var seq: Int64
        static func < (a: Self, b: Self) -> Bool { (a.epoch, a.seq) < (b.epoch, b.seq) }
    }

    struct Client {
        var name: String
        var identity: ProducerIdentity
        var nextSequence: Int32 = 0
        var sent: [Int] = []
        var zombies: [ProducerIdentity] = []
        /// The emitter's own counters per resource (flip topics).
        var emitterEpoch: Int64 = 1
        var emitterSeq: [String: Int64] = [:]
    }

    /// What the model expects when an append is answered.
    enum Expectation {
        case outcome(AppendOutcome)
        /// A retry of a queued batch: the original's outcome, answered as a retry.
        case sameAs(Int)
    }

    let seed: UInt64
    let steps: Int
    let isFlip: Bool
    var random: SplitMix64
    let disk: SimulatedDisk
    let clock = SimulatedClock()
    let executor = ManualExecutor()
    var configuration = StorageConfiguration()
    let topic: TopicConfiguration
    var registry: ProducerRegistry!
    var log: PartitionLog!
    var clients: [Client] = []
    var sent: [SentBatch] = []
    /// Per producer id, the batches the partition holds, in order.
    var accepted: [Int64: [Accepted]] = [:]
    var marks: [String: ResourceMarkModel] = [:]
    var registryEpochs: [Int64: Int16] = [:]
    var lastAppendTime: Int64 = -1
    /// Answers arrive through completions; checked against expectations here.
    let answers = AnswerBook()
    var summary = Summary()
    var trace: [String] = []
    var step = 0
    /// Batches that existed before the last crash, for counting retries after it.
    var beforeCrash = Set<Int>()

    public init(seed: UInt64, steps: Int = 200) {
        self.seed = seed
        self.steps = steps
        random = SplitMix64(seed: seed ^ 0x5EED_F11F)
        disk = SimulatedDisk(seed: random.next())
        isFlip = Bool.random(using: &random)
        topic = TopicConfiguration(name: "t", partitionCount: 1, kind: isFlip ? .flip : .raw, createdAt: 0)
        configuration.segmentBytes = [4096, 16384][Int.random(in: 0..<2, using: &random)]
        configuration.groupWriteBytesMax = 2048
        configuration.batchLimits = BatchLimits(batchBytesMax: 2048)
        configuration.indexIntervalBytes = 256
        configuration.recoveryCheckpointIntervalBytes = 2048
        configuration.preallocationBytes = [0, 4096][Int.random(in: 0..<2, using: &random)]
        configuration.queuedAppendCountMax = 64
        configuration.queuedBytesMax = 32768
    }

    public static func run(seed: UInt64, steps: Int = 200) throws(PartitionSimulation.Failure) -> Summary {
        var simulation = ProducerSimulation(seed: seed, steps: steps)
        return try simulation.run()
    }

    mutating func run() throws(PartitionSimulation.Failure) -> Summary {
        do throws(SimulationError) {
            do {
                try disk.makeDirectory("/d")
                try disk.makeDirectory("/d/t")
            } catch {
                throw SimulationError("making directories: \(error)")
            }
            try reopen()
            for index in 0..<Int.random(in: 2...4, using: &random) {
                clients.append(Client(name: "client-\(index)", identity: try initialize("client-\(index)")))
            }
        } catch {
            throw failure(error)
        }
        for index in 0..<steps {
            step = index
            do { try takeStep() } catch { throw failure(error) }
        }
        step = steps
        do throws(SimulationError) {
            if !disk.isFrozen && log.failure == nil { executor.runAll() }
            try answers.takeViolation()
            try restart(.process)
        } catch {
            throw failure(error)
        }
        let counts = answers.counts
        summary.committed = counts.committed
        summary.duplicates = counts.duplicates
        summary.refused = counts.refused
        summary.fenced = counts.fenced
        summary.outOfOrder = counts.outOfOrder
        summary.unknownProducer = counts.unknownProducer
        summary.failures = counts.failures
        return summary
    }

    /// The failure report, built from the simulation as it is now (its trace included).
    private func failure(_ error: SimulationError) -> PartitionSimulation.Failure {
        PartitionSimulation.Failure(seed: seed, step: step, message: "[producers, \(isFlip ? "flip" : "raw") topic] " + error.message, trace: Array(trace.suffix(40)))
    }

    mutating func note(_ text: String) {
        trace.append("[\(step)] \(text)")
        if trace.count > 200 { trace.removeFirst(100) }
    }

    mutating func takeStep() throws(SimulationError) {
        if disk.isFrozen || log.failure != nil {
            try restart(Bool.random(using: &random) ? .powerLoss : .process)
            return
        }
        let client = Int.random(in: 0..<clients.count, using: &random)
        switch Int.random(in: 0..<100, using: &random) {
        case 0..<34: try sendNew(client)
        case 34..<50: try retry(client)
        case 50..<74: try runWriter()
        case 74..<79: try reinitialize(client)
        case 79..<83: try zombieSends(client)
        case 83..<87: try restart(Bool.random(using: &random) ? .powerLoss : .process)
        case 87..<92: injectFault()
        case 92..<95: try cleanReopen()
        default: clock.advance(by: Int64.random(in: -3000...60_000, using: &random))
        }
        try answers.takeViolation()
    }

    // MARK: Clients

    func initialize(_ name: String) throws(SimulationError) -> ProducerIdentity {
        do {
            let identity = try registry.initialize(name: name)
            return identity
        } catch {
            throw SimulationError("initialising \(name): \(error)")
        }
    }

    mutating func reinitialize(_ index: Int) throws(SimulationError) {
        let old = clients[index].identity
        let identity: ProducerIdentity
        do {
            identity = try registry.initialize(name: clients[index].name)
        } catch {
            // A failed init leaves the registry refusing inits until a restart; the record
            // may or may not be on disk, so the client restarts and initialises again.
            note("init of \(clients[index].name) failed: \(error); restart")
            try restart(.process)
            identity = try initialize(clients[index].name)
        }
        registryEpochs[identity.producerId] = identity.epoch
        clients[index].zombies.append(old)
        clients[index].identity = identity
        clients[index].nextSequence = 0
        clients[index].emitterEpoch += 1
        note("client \(index) re-initialised: \(identity.producerId).\(identity.epoch); \(old.producerId).\(old.epoch) is a zombie")
    }

    mutating func makeBatch(_ index: Int, identity: ProducerIdentity, first: Int32) -> SentBatch {
        var client = clients[index]
        let count = Int.random(in: 1...3, using: &random)
        var events: [FlipEvent] = []
        var values: [([UInt8]?, [UInt8]?)] = []
        for _ in 0..<count {
            if isFlip {
                let resource = "\(client.name)/r\(Int.random(in: 0..<3, using: &random))"
                var seq = client.emitterSeq[resource, default: 0] + 1
                // Sometimes the emitter replays an old event (restarted from a stale snapshot).
                if seq > 1 && Int.random(in: 0..<6, using: &random) == 0 { seq -= Int64.random(in: 1...min(3, seq - 1), using: &random) } else { client.emitterSeq[resource] = seq }
                let event = FlipEvent(resource: resource, to: ["on", "off"][Int(seq % 2)], epoch: client.emitterEpoch, seq: seq, time: clock.nowMilliseconds())
                events.append(event)
                values.append((event.key, event.encodedValue()))
            } else {
                values.append((Array(client.name.utf8), Array("b\(sent.count)-\(values.count)".utf8)))
            }
        }
        clients[index] = client
        let bytes = RecordBatch.make(values: values, timestamp: 0, producerId: identity.producerId, producerEpoch: identity.epoch, baseSequence: first).encoded()
        return SentBatch(number: sent.count, client: index, identity: identity, first: first, last: first + Int32(count) - 1, events: events, bytes: bytes)
    }

    mutating func sendNew(_ index: Int) throws(SimulationError) {
        let inFlightMax = isFlip ? 1 : 5
        let identity = clients[index].identity
        if (accepted[identity.producerId] ?? []).filter({ !$0.durable }).count >= inFlightMax { return }
        let batch = makeBatch(index, identity: identity, first: clients[index].nextSequence)
        clients[index].nextSequence = batch.last + 1
        clients[index].sent.append(batch.number)
        sent.append(batch)
        try submit(batch, label: "new")
    }

    mutating func retry(_ index: Int) throws(SimulationError) {
        guard let number = clients[index].sent.suffix(8).randomElement(using: &random) else { return }
        if beforeCrash.contains(number) { summary.retriesAfterCrash += 1 }
        try submit(sent[number], label: "retry")
    }

    mutating func zombieSends(_ index: Int) throws(SimulationError) {
        guard let zombie = clients[index].zombies.last else { return }
        let batch = makeBatch(index, identity: zombie, first: Int32.random(in: 0...20, using: &random))
        sent.append(batch)
        try submit(batch, label: "zombie")
    }

    // MARK: The oracle

    /// The outcome the rules give `batch` now, and the state it leaves if accepted.
    mutating func expect(_ batch: SentBatch) -> Expectation {
        let id = batch.identity.producerId
        if let current = registryEpochs[id], batch.identity.epoch < current {
            return .outcome(.fenced(""))
        }
        let history = accepted[id] ?? []
        guard let newest = history.last else {
            return batch.first == 0 ? accept(batch) : .outcome(.unknownProducer(""))
        }
        if batch.identity.epoch < newest.epoch { return .outcome(.fenced("")) }
        if batch.identity.epoch > newest.epoch { return batch.first == 0 ? accept(batch) : .outcome(.outOfOrder("")) }
        let window = history.filter { $0.epoch == newest.epoch }.suffix(5)
        if let match = window.first(where: { $0.first == batch.first && $0.last == batch.last }) {
            return match.durable ? .outcome(retryAnswer(match.outcome)) : .sameAs(match.number)
        }
        let expected = newest.last == Int32.max ? 0 : newest.last + 1
        if batch.first != expected { return .outcome(.outOfOrder("")) }
        if history.filter({ !$0.durable }).count >= (isFlip ? 1 : 5) {
            return .outcome(.refused((0...Int(batch.last - batch.first)).map { RecordRefusal(index: $0, reason: .wait, message: "") }))
        }
        return accept(batch)
    }

    /// Accepting: the offsets and time it gets, and for a flip batch every refusal.
    mutating func accept(_ batch: SentBatch) -> Expectation {
        let appendTime = max(clock.nowMilliseconds(), lastAppendTime)
        let base = log.offsets.next
        var refusals: [RecordRefusal] = []
        var local: [String: ResourceMarkModel] = [:]
        var order: [String] = []
        for (index, event) in batch.events.enumerated() {
            let mark = ResourceMarkModel(epoch: event.epoch, seq: event.seq)
            if let previous = local[event.resource] ?? marks[event.resource], mark <= previous {
                refusals.append(RecordRefusal(index: index, reason: mark.epoch < previous.epoch ? .fenced : .replayed, message: ""))
                continue
            }
            if local[event.resource] == nil { order.append(event.resource) }
            local[event.resource] = mark
        }
        let outcome: AppendOutcome
        if refusals.isEmpty {
            outcome = .committed(AppendResult(baseOffset: base, lastOffset: base + Int64(batch.last - batch.first), appendTime: appendTime))
        } else {
            outcome = .refused(refusals)
        }
        let newMarks = refusals.isEmpty ? order.map { ($0, local[$0]!) } : []
        accepted[batch.identity.producerId, default: []].append(Accepted(
            number: batch.number, epoch: batch.identity.epoch, first: batch.first, last: batch.last, outcome: outcome, durable: false, marks: newMarks))
        for (resource, mark) in newMarks { marks[resource] = mark }
        lastAppendTime = appendTime
        return .outcome(outcome)
    }

    func retryAnswer(_ outcome: AppendOutcome) -> AppendOutcome {
        if case .committed(let result) = outcome { return .duplicate(result) }
        return outcome
    }

    mutating func submit(_ batch: SentBatch, label: String) throws(SimulationError) {
        let expectation = expect(batch)
        let expectedText: String
        switch expectation {
        case .outcome(let outcome): expectedText = "\(outcome)"
        case .sameAs(let number): expectedText = "the outcome of batch \(number)"
        }
        note("\(label) batch \(batch.number): producer \(batch.identity.producerId).\(batch.identity.epoch) seq \(batch.first)...\(batch.last), expect \(expectedText)")
        let book = answers
        let number = batch.number
        let sameAs: Int?
        if case .sameAs(let original) = expectation { sameAs = original } else { sameAs = nil }
        let expected: AppendOutcome?
        if case .outcome(let outcome) = expectation { expected = outcome } else { expected = nil }
        book.expect(number: number, submission: book.nextSubmission(), outcome: expected, sameAs: sameAs)
        let submission = book.lastSubmission
        log.append(batch.bytes, ackMode: .durable) { result in book.answer(submission: submission, result) }
        try book.takeViolation()
    }

    // MARK: Writer, crashes, reopens

    mutating func runWriter() throws(SimulationError) {
        guard executor.runNext() else { return }
        note("writer step")
        // Batches the writer made durable: every accepted one below the durable end.
        let durableEnd = log.offsets.durableEnd
        for id in accepted.keys {
            for index in accepted[id]!.indices where !accepted[id]![index].durable {
                if let offset = answers.offset(of: accepted[id]![index].number), offset < durableEnd { accepted[id]![index].durable = true }
            }
        }
        try answers.takeViolation()
        if log.failure != nil { note("partition read-only: \(log.failure!.message)") }
    }

    mutating func injectFault() {
        let fault: SimulatedDisk.Fault = Bool.random(using: &random) ? .syncFails : .freeze(afterOperations: Int.random(in: 0...4, using: &random))
        disk.inject(fault)
        note("inject \(fault)")
    }

    mutating func cleanReopen() throws(SimulationError) {
        let done = Mutex(false)
        log.close { _ in done.withLock { $0 = true } }
        executor.runAll()
        try answers.takeViolation()
        if disk.isFrozen || log.failure != nil {
            try restart(.process)
            return
        }
        guard done.withLock({ $0 }) else { throw SimulationError("close did not complete") }
        disk.clearFaults()
        note("clean close")
        try reopen()
    }

    mutating func restart(_ kind: SimulatedDisk.CrashKind) throws(SimulationError) {
        disk.crash(kind)
        executor.dropAll()
        answers.processDied()
        summary.crashes += 1
        note("crash \(kind)")
        try reopen()
    }

    /// Reopens registry and partition, reads the log, and resets the model to it.
    mutating func reopen() throws(SimulationError) {
        do {
            registry = try ProducerRegistry.open(directory: "/d", fileIO: disk, logger: PartitionSimulation.logger)
            log = try PartitionLog.open(
                directory: "/d/t/0", topic: topic, partition: 0,
                environment: StorageEnvironment(fileIO: disk, configuration: configuration, clock: clock, executor: executor, logger: PartitionSimulation.logger),
                registry: registry)
        } catch {
            throw SimulationError("reopen failed: \(error)")
        }
        for client in clients {
            switch registry.status(of: client.identity.producerId) {
            case .named(let epoch):
                // Ahead only after an init that failed but reached the disk.
                if epoch < client.identity.epoch { throw SimulationError("the registry lost \(client.name)'s epoch \(client.identity.epoch) (it says \(epoch))") }
                registryEpochs[client.identity.producerId] = epoch
            default:
                throw SimulationError("the registry lost \(client.name)")
            }
        }
        try rebuildModelFromLog()
        beforeCrash = Set(sent.map(\.number))
        note("reopened at offset \(log.offsets.next)")
    }

    mutating func rebuildModelFromLog() throws(SimulationError) {
        var newAccepted: [Int64: [Accepted]] = [:]
        var newMarks: [String: ResourceMarkModel] = [:]
        var stored = Set<Int>()
        var offset = log.offsets.start
        lastAppendTime = -1
        while offset < log.offsets.durableEnd {
            let read: ReadResult
            do { read = try log.read(from: offset, maxBytes: 1 << 20) } catch { throw SimulationError("reading the log: \(error)") }
            var position = 0
            while position < read.bytes.count {
                guard let header = try? RecordBatchHeader.read(bytes: Array(read.bytes[position...])),
                      let batch = try? RecordBatch.decode(Array(read.bytes[position..<(position + header.totalSize)]), allowingControl: true) else {
                    throw SimulationError("the log holds an undecodable batch")
                }
                position += header.totalSize
                lastAppendTime = header.maxTimestamp
                guard header.producerId >= 0 else { throw SimulationError("a batch without a producer id is in the log") }
                guard let sentBatch = sent.first(where: { $0.identity.producerId == header.producerId && $0.identity.epoch == header.producerEpoch && $0.first == header.baseSequence }) else {
                    throw SimulationError("offset \(header.baseOffset) holds a batch nobody sent")
                }
                if !stored.insert(sentBatch.number).inserted { throw SimulationError("batch \(sentBatch.number) is stored twice") }
                var history = newAccepted[header.producerId] ?? []
                if let previous = history.last, previous.epoch == header.producerEpoch, header.baseSequence != previous.last + 1 {
                    throw SimulationError("producer \(header.producerId).\(header.producerEpoch): sequence \(header.baseSequence) follows \(previous.last)")
                }
                if history.last.map({ $0.epoch != header.producerEpoch }) ?? true, header.baseSequence != 0 {
                    throw SimulationError("producer \(header.producerId).\(header.producerEpoch) starts at sequence \(header.baseSequence), not 0")
                }
                var batchMarks: [(String, ResourceMarkModel)] = []
                let outcome: AppendOutcome
                if let marker = try? RefusalMarker.decode(batch) {
                    outcome = .refused(marker.refusals)
                } else {
                    outcome = .committed(AppendResult(baseOffset: header.baseOffset, lastOffset: header.lastOffset, appendTime: header.maxTimestamp))
                    for record in batch.records where isFlip {
                        guard let event = try? FlipEvent.decode(key: record.key, value: record.value) else { throw SimulationError("a stored flip record does not decode") }
                        let mark = ResourceMarkModel(epoch: event.epoch, seq: event.seq)
                        if let previous = newMarks[event.resource], mark <= previous {
                            throw SimulationError("resource \(event.resource): (\(mark.epoch), \(mark.seq)) stored after (\(previous.epoch), \(previous.seq))")
                        }
                        newMarks[event.resource] = mark
                        batchMarks.append((event.resource, mark))
                    }
                }
                let last = sentBatch.last
                history.append(Accepted(number: sentBatch.number, epoch: header.producerEpoch, first: header.baseSequence, last: last, outcome: outcome, durable: true, marks: batchMarks))
                newAccepted[header.producerId] = history
            }
            offset = read.nextOffset
        }
        // Every batch answered as durably committed before must be here, at its offsets.
        for (number, result) in answers.durablyCommitted() {
            guard stored.contains(number) else { throw SimulationError("batch \(number) was acknowledged durable at offset \(result.baseOffset) but is gone after reopen") }
            let found = newAccepted.values.flatMap { $0 }.first { $0.number == number }
            if found?.outcome.resultOfCommit != result { throw SimulationError("batch \(number) moved from offset \(result.baseOffset)") }
        }
        accepted = newAccepted
        marks = newMarks
        answers.resetOffsets(to: newAccepted.values.flatMap { $0 }.compactMap { accepted in accepted.outcome.resultOfCommit.map { (accepted.number, $0.baseOffset) } })
    }
}

extension AppendOutcome {
    var resultOfCommit: AppendResult? {
        if case .committed(let result) = self { return result }
        return nil
    }

    /// Same kind, offsets and refused records (reasons and indexes; messages are free).
    func matches(_ other: AppendOutcome) -> Bool {
        switch (self, other) {
        case (.committed(let a), .committed(let b)), (.duplicate(let a), .duplicate(let b)): return a == b
        case (.refused(let a), .refused(let b)):
            return a.map(\.index) == b.map(\.index) && a.map(\.reason) == b.map(\.reason)
        case (.fenced, .fenced), (.outOfOrder, .outOfOrder), (.unknownProducer, .unknownProducer): return true
        default: return false
        }
    }
}

/// The expectations and answers of the simulation's appends. Completions run on the
/// simulation's thread (the manual executor), so this needs no more than a lock to be
/// Sendable.
final class AnswerBook: Sendable {
    struct Expected {
        var number: Int
        var outcome: AppendOutcome?
        var sameAs: Int?
        var answered = false
    }

    struct State {
        var expectations: [Int: Expected] = [:]
        var submissions = 0
        /// Offsets where each batch number was committed (from answers, then the log).
        var offsets: [Int: Int64] = [:]
        var outcomes: [Int: AppendOutcome] = [:]
        var durable: [Int: AppendResult] = [:]
        var violation: String?
        var counts = ProducerSimulation.Summary()
    }

    var counts: ProducerSimulation.Summary { state.withLock { $0.counts } }

    private let state = Mutex(State())

    func nextSubmission() -> Int { state.withLock { $0.submissions += 1; return $0.submissions } }
    var lastSubmission: Int { state.withLock { $0.submissions } }

    func expect(number: Int, submission: Int, outcome: AppendOutcome?, sameAs: Int?) {
        state.withLock { $0.expectations[submission] = Expected(number: number, outcome: outcome, sameAs: sameAs) }
    }

    func answer(submission: Int, _ result: Result<AppendOutcome, StorageError>) {
        state.withLock { state in
            guard var expected = state.expectations[submission] else { return }
            if expected.answered {
                state.violation = state.violation ?? "submission \(submission) was answered twice"
                return
            }
            expected.answered = true
            state.expectations[submission] = expected
            guard case .success(let outcome) = result else {
                state.counts.failures += 1
                return
            }
            switch outcome {
            case .committed: state.counts.committed += 1
            case .duplicate: state.counts.duplicates += 1
            case .refused: state.counts.refused += 1
            case .fenced: state.counts.fenced += 1
            case .outOfOrder: state.counts.outOfOrder += 1
            case .unknownProducer: state.counts.unknownProducer += 1
            }
            var want = expected.outcome
            if let original = expected.sameAs {
                guard let originalOutcome = state.outcomes[original] else {
                    state.violation = state.violation ?? "a retry of batch \(original) was answered before the batch itself"
                    return
                }
                if case .committed(let result) = originalOutcome { want = .duplicate(result) } else { want = originalOutcome }
            }
            if let want, !outcome.matches(want) {
                state.violation = state.violation ?? "batch \(expected.number) was answered \(outcome), the rules say \(want)"
                return
            }
            if expected.sameAs == nil, case .committed(let result) = outcome {
                state.offsets[expected.number] = result.baseOffset
                state.durable[expected.number] = result
            }
            if expected.sameAs == nil { state.outcomes[expected.number] = outcome }
        }
    }

    func offset(of number: Int) -> Int64? {
        state.withLock { state in
            if let offset = state.offsets[number] { return offset }
            // A refusal marker also takes an offset; refused batches count as durable once answered.
            if case .refused? = state.outcomes[number] { return Int64.min }
            return nil
        }
    }

    func durablyCommitted() -> [(Int, AppendResult)] { state.withLock { $0.durable.map { ($0.key, $0.value) } } }

    /// After a crash: unanswered submissions never will be.
    func processDied() {
        state.withLock { state in
            for key in state.expectations.keys where !state.expectations[key]!.answered { state.expectations[key]!.answered = true }
        }
    }

    func resetOffsets(to pairs: [(Int, Int64)]) {
        state.withLock { state in
            state.offsets = Dictionary(pairs, uniquingKeysWith: { first, _ in first })
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
}
