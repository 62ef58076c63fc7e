import LogFormat
import LogIO
import LogSimulation
import LogStorage
import Logging
import Synchronization

/// The storage layer's seeded simulation: random appends in every ack mode, writer steps,
/// reads, clock steps (forward and back), process crashes and power losses at any point of
/// a writer step, EIO, ENOSPC and short writes, bit rot in stored batches and in index
/// files, clean and unclean reopens, all on `SimulatedDisk` and all from one seed.
///
/// After every reopen the log is read whole and held against `AcknowledgementModel`:
/// - every batch acknowledged as durable is present exactly once, in order, byte-identical;
/// - after a process crash, every batch acknowledged as written is present too;
/// - the end of durable data never moves back (readers never saw an offset a crash took);
/// - every stored batch is one that was submitted, at the offset and append time the
///   model computed, so offsets are dense and nothing torn is readable;
/// - a bit flipped in synced data outside the last group write's span (anywhere after a
///   clean stop) is reported as corruption, naming the batch's file and position, never
///   truncated away and never returned as data.
/// Between steps: durable acknowledgements arrive in log order, each agreeing with the
/// model, and no segment holds more unsynced bytes than one group write.
public struct PartitionSimulation {
    public struct Failure: Error, CustomStringConvertible {
        public var seed: UInt64
        public var step: Int
        public var message: String
        public var trace: [String]

        public var description: String {
            "simulation seed \(seed) failed at step \(step): \(message)\nlast actions:\n  " + trace.joined(separator: "\n  ")
        }
    }

    public struct Summary: Sendable, Equatable {
        public var steps = 0
        public var appendsSubmitted = 0
        public var durableAcks = 0
        public var writtenAcks = 0
        public var powerLosses = 0
        public var processCrashes = 0
        public var cleanReopens = 0
        public var tornTailsTruncated = 0
        public var faultsInjected = 0
        public var bitFlipsDetected = 0
        public var indexRebuilds = 0
        public var readOnlyTransitions = 0
        public var finalOffset: Int64 = 0

        public init() {}

        public mutating func add(_ other: Summary) {
            steps += other.steps
            appendsSubmitted += other.appendsSubmitted
            durableAcks += other.durableAcks
            writtenAcks += other.writtenAcks
            powerLosses += other.powerLosses
            processCrashes += other.processCrashes
            cleanReopens += other.cleanReopens
            tornTailsTruncated += other.tornTailsTruncated
            faultsInjected += other.faultsInjected
            bitFlipsDetected += other.bitFlipsDetected
            indexRebuilds += other.indexRebuilds
            readOnlyTransitions += other.readOnlyTransitions
            finalOffset += other.finalOffset
        }
    }

    static let directory = "/data/topic/0"

    let seed: UInt64
    let steps: Int
    var random: SplitMix64
    let disk: SimulatedDisk
    let clock = SimulatedClock()
    let executor = ManualExecutor()
    let configuration: StorageConfiguration
    let model = AcknowledgementModel()
    var log: PartitionLog?
    var summary = Summary()
    var trace: [String] = []
    var step = 0
    var batchCounter = 0

    public init(seed: UInt64, steps: Int = 300) {
        self.seed = seed
        self.steps = steps
        random = SplitMix64(seed: seed)
        disk = SimulatedDisk(seed: random.next())
        var configuration = StorageConfiguration()
        configuration.segmentBytes = [4096, 8192, 16384, 65536][Int.random(in: 0..<4, using: &random)]
        configuration.groupWriteBytesMax = [1024, 2048, 4096][Int.random(in: 0..<3, using: &random)]
        configuration.batchLimits = BatchLimits(batchBytesMax: 1024)
        configuration.indexIntervalBytes = [64, 256, 1024][Int.random(in: 0..<3, using: &random)]
        configuration.recoveryCheckpointIntervalBytes = [1024, 4096, 16384][Int.random(in: 0..<3, using: &random)]
        configuration.queuedAppendCountMax = [4, 16, 64][Int.random(in: 0..<3, using: &random)]
        configuration.queuedBytesMax = 8192
        configuration.segmentAgeMilliseconds = [60_000, 3_600_000][Int.random(in: 0..<2, using: &random)]
        configuration.preallocationBytes = [0, 1024, 4096, 16384][Int.random(in: 0..<4, using: &random)]
        self.configuration = configuration
    }

    /// Runs the simulation; throws the first broken property with the seed and a trace.
    public static func run(seed: UInt64, steps: Int = 300) throws(Failure) -> Summary {
        var simulation = PartitionSimulation(seed: seed, steps: steps)
        return try simulation.run()
    }

    mutating func run() throws(Failure) -> Summary {
        do throws(SimulationError) {
            do {
                try disk.makeDirectory("/data")
                try disk.makeDirectory("/data/topic")
            } catch {
                throw SimulationError("making directories: \(error)")
            }
            try reopen(expectClean: nil)
        } catch {
            throw failure(error)
        }
        for index in 0..<steps {
            step = index
            do { try takeStep() } catch { throw failure(error) }
        }
        step = steps
        do throws(SimulationError) {
            try drainAndVerifyAcks()
            try restart(.process)
        } catch {
            throw failure(error)
        }
        summary.steps = steps
        (summary.durableAcks, summary.writtenAcks) = model.ackCounts
        summary.finalOffset = log?.offsets.next ?? 0
        return summary
    }

    /// The failure report, built from the simulation as it is now (its trace included).
    private func failure(_ error: SimulationError) -> Failure {
        Failure(seed: seed, step: step, message: error.message, trace: Array(trace.suffix(40)))
    }

    mutating func note(_ action: String) {
        trace.append("[\(step)] \(action)")
        if trace.count > 200 { trace.removeFirst(100) }
    }

    // MARK: Steps

    mutating func takeStep() throws(SimulationError) {
        if disk.isFrozen {
            // The planned freeze stands for the process being killed mid-operation.
            try restart(Bool.random(using: &random) ? .powerLoss : .process)
            return
        }
        if let log, log.failure != nil, Bool.random(using: &random) {
            note("restart after read-only: \(log.failure!.message)")
            try restart(.process)
            return
        }
        let roll = Int.random(in: 0..<100, using: &random)
        switch roll {
        case 0..<38: try submitAppends()
        case 38..<68: try runWriterStep()
        case 68..<76: try readAndVerify()
        case 76..<80: advanceClock()
        case 80..<83: try restart(.powerLoss)
        case 83..<86: try restart(.process)
        case 86..<89: try cleanReopen()
        case 89..<95: injectFault()
        case 95..<98: try bitFlipScenario()
        default: try indexDamageScenario()
        }
    }

    mutating func submitAppends() throws(SimulationError) {
        guard let log else { return }
        for _ in 0..<Int.random(in: 1...4, using: &random) {
            let ackMode = [AckMode.durable, .durable, .written, .none][Int.random(in: 0..<4, using: &random)]
            let batch = makeBatch()
            let before = log.offsets.next
            let expectedTime = max(clock.nowMilliseconds(), model.lastAppendTime)
            let id = model.submit(batch: batch, ackMode: ackMode)
            log.append(batch, ackMode: ackMode) { [model] result in model.complete(id, result) }
            let after = log.offsets.next
            summary.appendsSubmitted += 1
            if after > before {
                try model.accepted(id, baseOffset: before, appendTime: expectedTime)
                note("append \(ackMode) -> offset \(before) (\(batch.count) bytes)")
            } else {
                note("append \(ackMode) refused")
            }
        }
        try model.takeViolation()
    }

    mutating func makeBatch() -> [UInt8] {
        batchCounter += 1
        let recordCount = Int.random(in: 1...4, using: &random)
        let valueBytes = Int.random(in: 1...180, using: &random)
        let values = (0..<recordCount).map { index -> ([UInt8]?, [UInt8]?) in
            let text = "s\(seed)b\(batchCounter)r\(index)-" + String(repeating: "x", count: valueBytes)
            return (Array("resource-\(batchCounter % 5)".utf8), Array(text.utf8))
        }
        let compression: CompressionCodec = Int.random(in: 0..<4, using: &random) == 0 ? .lz4 : .none
        return RecordBatch.make(values: values, timestamp: Int64(batchCounter), compression: compression).encoded()
    }

    mutating func runWriterStep() throws(SimulationError) {
        let wasFailed = log?.failure != nil
        if executor.runNext() { note("writer step") }
        if !wasFailed, let failure = log?.failure {
            summary.readOnlyTransitions += 1
            note("partition read-only: \(failure.message)")
        }
        try model.takeViolation()
        try checkUnsyncedSpan()
        if let log {
            let durableEnd = log.offsets.durableEnd
            try require(durableEnd >= model.durableEndSeen, "the durable end moved back from \(model.durableEndSeen) to \(durableEnd)")
            model.durableEndSeen = durableEnd
        }
    }

    mutating func advanceClock() {
        let delta = Int.random(in: 0..<10, using: &random) == 0 ? -Int64.random(in: 1...5000, using: &random) : Int64.random(in: 0...90_000, using: &random)
        clock.advance(by: delta)
        note("clock \(delta > 0 ? "+" : "")\(delta) ms")
    }

    mutating func injectFault() {
        guard log != nil, log?.failure == nil else { return }
        let fault: SimulatedDisk.Fault
        switch Int.random(in: 0..<4, using: &random) {
        case 0: fault = .syncFails
        case 1: fault = .writeFails(.noSpace)
        case 2: fault = .shortWrite
        default: fault = .freeze(afterOperations: Int.random(in: 0...6, using: &random))
        }
        disk.inject(fault)
        summary.faultsInjected += 1
        note("inject \(fault)")
    }

    /// No segment may hold more unsynced bytes than one group write (design decision 4).
    func checkUnsyncedSpan() throws(SimulationError) {
        for path in disk.filePaths() where path.hasSuffix(".log") {
            let unsynced = disk.unsyncedTailBytes(path)
            try require(unsynced <= configuration.groupWriteBytesMax, "\(path) holds \(unsynced) unsynced bytes, more than one group write (\(configuration.groupWriteBytesMax))")
        }
    }

    // MARK: Reads

    mutating func readAndVerify() throws(SimulationError) {
        guard let log, log.offsets.durableEnd > log.offsets.start else { return }
        let offsets = log.offsets
        let from = Int64.random(in: offsets.start..<offsets.durableEnd, using: &random)
        let maxBytes = Int.random(in: 1...3000, using: &random)
        let result: ReadResult
        do { result = try log.read(from: from, maxBytes: maxBytes) } catch { throw SimulationError("read from \(from) failed: \(error)") }
        try require(result.batchCount > 0, "read from \(from) below the durable end \(offsets.durableEnd) returned nothing")
        let batches = try splitBatches(result.bytes)
        try require(batches.first!.header.baseOffset <= from && batches.first!.header.lastOffset >= from, "read from \(from) started at batch \(batches.first!.header.baseOffset)")
        for batch in batches {
            try require(batch.header.lastOffset < offsets.durableEnd, "read returned offset \(batch.header.lastOffset) at or past the durable end \(offsets.durableEnd)")
            try model.verifyStored(batch.bytes, header: batch.header)
        }
        note("read \(from) max \(maxBytes): \(batches.count) batches")
    }

    func readWholeLog(_ log: PartitionLog) throws(SimulationError) -> [(header: RecordBatchHeader, bytes: [UInt8])] {
        var all: [(header: RecordBatchHeader, bytes: [UInt8])] = []
        var offset = log.offsets.start
        while offset < log.offsets.durableEnd {
            let result: ReadResult
            do { result = try log.read(from: offset, maxBytes: 8192) } catch { throw SimulationError("reading the log at \(offset): \(error)") }
            try require(result.batchCount > 0, "reading at \(offset) returned nothing before the durable end \(log.offsets.durableEnd)")
            all += try splitBatches(result.bytes)
            offset = result.nextOffset
        }
        return all
    }

    func splitBatches(_ bytes: [UInt8]) throws(SimulationError) -> [(header: RecordBatchHeader, bytes: [UInt8])] {
        var batches: [(header: RecordBatchHeader, bytes: [UInt8])] = []
        var position = 0
        while position < bytes.count {
            guard let header = try? RecordBatchHeader.read(bytes: Array(bytes[position...])),
                  position + header.totalSize <= bytes.count,
                  let verified = try? RecordBatchHeader.verify(bytes: Array(bytes[position..<(position + header.totalSize)]))
            else {
                throw SimulationError("a read returned bytes that are not a valid batch at position \(position)")
            }
            batches.append((verified, Array(bytes[position..<(position + header.totalSize)])))
            position += header.totalSize
        }
        return batches
    }

    // MARK: Crashes and reopens

    mutating func drainAndVerifyAcks() throws(SimulationError) {
        if log?.failure == nil { executor.runAll() }
        try model.takeViolation()
    }

    /// Kills the "process" (and for a power loss, the machine), reopens, verifies.
    mutating func restart(_ kind: SimulatedDisk.CrashKind) throws(SimulationError) {
        try checkUnsyncedSpan()
        let durableEndBefore = log?.offsets.durableEnd ?? 0
        disk.crash(kind)
        executor.dropAll()
        log = nil
        model.crashed(kind)
        if kind == .powerLoss { summary.powerLosses += 1 } else { summary.processCrashes += 1 }
        note("crash \(kind)")
        try reopen(expectClean: false)
        try require(log!.offsets.durableEnd >= durableEndBefore, "after a \(kind) the log ends at \(log!.offsets.durableEnd), but readers had seen up to \(durableEndBefore)")
    }

    mutating func cleanReopen() throws(SimulationError) {
        guard let log, log.failure == nil else { return }
        let clean = try closeCleanly(log)
        self.log = nil
        summary.cleanReopens += 1
        note(clean ? "clean close" : "close failed under an injected fault")
        try reopen(expectClean: clean ? true : nil)
    }

    /// Closes the partition; true when the clean-shutdown record was written. An injected
    /// fault can make the writer fail while draining, or the close itself fail: then the
    /// next open may be unclean, which recovery must handle like any other.
    mutating func closeCleanly(_ log: PartitionLog) throws(SimulationError) -> Bool {
        let outcome = Mutex<Result<Void, StorageError>?>(nil)
        log.close { result in outcome.withLock { $0 = result } }
        executor.runAll()
        try model.takeViolation()
        if disk.isFrozen {
            let kind: SimulatedDisk.CrashKind = Bool.random(using: &random) ? .powerLoss : .process
            disk.crash(kind)
            executor.dropAll()
            model.crashed(kind)
            note("froze while closing: crash \(kind)")
            return false
        }
        disk.clearFaults()
        guard let result = outcome.withLock({ $0 }) else { throw SimulationError("close did not complete") }
        if case .failure(let error) = result {
            try require(error.code == .io, "close failed with \(error)")
            return false
        }
        if log.failure != nil { summary.readOnlyTransitions += 1 }
        return log.failure == nil
    }

    mutating func reopen(expectClean: Bool?) throws(SimulationError) {
        // `lodestone check` before the open predicts it (both act on `RecoveryPlan`): a
        // partition that opens has no finding that refuses an open.
        let (_, before) = StoreChecker.checkPartition(directory: Self.directory, topic: "topic", partition: 0, fileIO: disk)
        let opened: PartitionLog
        do {
            opened = try PartitionLog.open(
                directory: Self.directory, topic: "topic", partition: 0, environment: StorageEnvironment(fileIO: disk, configuration: configuration, clock: clock, executor: executor, logger: Self.logger))
        } catch {
            throw SimulationError("reopen failed: \(error)")
        }
        try require(!before.contains(where: \.refusesOpen), "check said the open would be refused, but it succeeded: \(before)")
        let report = opened.recoveryReport
        if let expectClean { try require(report.cleanShutdown == expectClean, "recovery says clean shutdown = \(report.cleanShutdown), expected \(expectClean)") }
        if let cut = report.truncation {
            summary.tornTailsTruncated += 1
            note("torn tail truncated at \(cut.position) (\(cut.droppedBytes) bytes): \(cut.reason)")
        }
        summary.indexRebuilds += report.rebuiltIndexes.count
        log = opened
        let stored = try readWholeLog(opened)
        try model.reconcile(stored: stored, end: opened.offsets.next)
        try require(opened.offsets.durableEnd == opened.offsets.next, "after open everything stored is durable")
        model.durableEndSeen = opened.offsets.durableEnd
        // `lodestone check` must agree with recovery: a store that opened is fault-free.
        let (checked, findings) = StoreChecker.checkPartition(directory: Self.directory, topic: "topic", partition: 0, fileIO: disk)
        try require(!findings.contains(where: \.isFault), "check reports faults in a partition that recovery opened: \(findings)")
        try require(checked.nextOffset == opened.offsets.next, "check says the log ends at \(checked.nextOffset), the partition at \(opened.offsets.next)")
        note("reopened: \(stored.count) batches, next offset \(opened.offsets.next)")
    }

    // MARK: Corruption

    /// Flips a bit in a stored batch outside the torn-tail window (anywhere after a clean
    /// close) and requires the damage to be reported, not truncated and not returned.
    mutating func bitFlipScenario() throws(SimulationError) {
        guard let current = log, current.failure == nil else { return }
        var clean = Bool.random(using: &random)
        if clean {
            clean = try closeCleanly(current)
        } else {
            executor.runAll()
            try model.takeViolation()
            disk.crash(.process)
            executor.dropAll()
            model.crashed(.process)
        }
        log = nil
        let logPaths = disk.filePaths().filter { $0.hasSuffix(".log") }
        let lastPath = logPaths.last
        var candidates: [(path: String, batchStart: Int, batchEnd: Int)] = []
        for path in logPaths {
            let content = disk.content(of: path) ?? []
            // The torn-tail window is measured from the end of written data, the position
            // after the last non-zero byte, as recovery measures it (the file may carry
            // pre-written zeros). Flipping a bit in a batch before that window cannot move it.
            let writtenEnd = (content.lastIndex(where: { $0 != 0 }) ?? -1) + 1
            for (start, end) in batchSpans(content) {
                if !clean && path == lastPath && writtenEnd - start <= configuration.groupWriteBytesMax { continue }
                candidates.append((path, start, end))
            }
        }
        guard !candidates.isEmpty else {
            note("bit flip: no eligible batch")
            try reopen(expectClean: clean)
            return
        }
        let target = candidates[Int.random(in: 0..<candidates.count, using: &random)]
        let byte = Int.random(in: target.batchStart..<target.batchEnd, using: &random)
        let bit = Int.random(in: 0..<8, using: &random)
        let sizeBefore = disk.content(of: target.path)!.count
        disk.flipBit(path: target.path, byteOffset: byte, bit: bit)
        note("flip bit \(bit) of byte \(byte) in \(target.path) (batch at \(target.batchStart), \(clean ? "clean" : "unclean"))")
        let expected = "\(target.path): invalid batch at byte \(target.batchStart): "
        // `lodestone check` must name the same file and batch, as a fault.
        let (_, findings) = StoreChecker.checkPartition(directory: Self.directory, topic: "topic", partition: 0, fileIO: disk)
        let hit = findings.contains { $0.isFault && $0.path == target.path && $0.position == Int64(target.batchStart) }
        try require(hit, "check did not report the flipped batch at \(target.path) byte \(target.batchStart) as a fault; it found: \(findings)")
        let predictsRefusal = findings.contains(where: \.refusesOpen)
        do {
            let opened = try PartitionLog.open(
                directory: Self.directory, topic: "topic", partition: 0, environment: StorageEnvironment(fileIO: disk, configuration: configuration, clock: clock, executor: executor, logger: Self.logger))
            try require(!predictsRefusal, "check said the open would be refused, but it succeeded: \(findings)")
            var reported = false
            do {
                _ = try readWholeLog(opened)
            } catch {
                try require(error.message.contains(expected), "the flipped bit was reported as \"\(error.message)\", expected it to name \(expected)")
                reported = true
            }
            try require(reported, "a flipped bit in a stored batch was read back as data without an error")
            _ = try closeCleanly(opened)
        } catch let error as SimulationError {
            throw error
        } catch let error as StorageError {
            try require(error.code == .corruption && error.message.contains(expected), "open reported \(error), expected corruption naming \(expected)")
            try require(error.path == target.path && error.position == Int64(target.batchStart), "open's error carries \(error.path ?? "no file"), byte \(error.position.map(String.init) ?? "none"), expected \(target.path) byte \(target.batchStart)")
            // The plan's refusals are check's; past them open reads only the log after the
            // newest replay snapshot, where check reported the batch as a fault above.
            try require(predictsRefusal || error.message.hasSuffix("(rebuilding replay protection)"), "open refused the partition (\(error.message)), but check did not say it would: \(findings)")
        } catch {
            throw SimulationError("unexpected error \(error)")
        }
        // A genuine torn tail later in the file may be cut; the damaged batch never is.
        let sizeAfter = disk.content(of: target.path)?.count ?? 0
        try require(sizeAfter >= target.batchEnd, "\(target.path) shrank from \(sizeBefore) to \(sizeAfter) bytes, cutting the damaged batch at \(target.batchStart): corruption must never be truncated away")
        summary.bitFlipsDetected += 1
        disk.flipBit(path: target.path, byteOffset: byte, bit: bit)
        note("bit restored")
        try reopen(expectClean: nil)
    }

    /// Damages or removes an index file after a clean close: the next open must rebuild it
    /// and reads must be unaffected.
    mutating func indexDamageScenario() throws(SimulationError) {
        guard let current = log, current.failure == nil else { return }
        let clean = try closeCleanly(current)
        log = nil
        let indexes = disk.filePaths().filter { $0.hasSuffix(".index") || $0.hasSuffix(".timeindex") }
        if let path = indexes.isEmpty ? nil : indexes[Int.random(in: 0..<indexes.count, using: &random)] {
            if Bool.random(using: &random) {
                do { try disk.remove(path) } catch { throw SimulationError("removing \(path): \(error)") }
                note("removed \(path)")
            } else {
                let size = disk.content(of: path)?.count ?? 0
                if size > 0 {
                    disk.flipBit(path: path, byteOffset: Int.random(in: 0..<size, using: &random), bit: Int.random(in: 0..<8, using: &random))
                    note("flipped a bit in \(path)")
                }
            }
        }
        try reopen(expectClean: clean ? true : nil)
    }

    /// (start, end) of each valid-looking batch in a segment's bytes, by their lengths.
    func batchSpans(_ content: [UInt8]) -> [(Int, Int)] {
        var spans: [(Int, Int)] = []
        var position = 0
        while position + RecordBatchHeader.size <= content.count {
            let length = content[(position + 8)..<(position + 12)].reduce(0) { ($0 << 8) | Int($1) }
            let end = position + 12 + length
            if length < Int(RecordBatchHeader.batchLengthMin) || end > content.count { break }
            spans.append((position, end))
            position = end
        }
        return spans
    }

    func require(_ condition: Bool, _ message: @autoclosure () -> String) throws(SimulationError) {
        if !condition { throw SimulationError(message()) }
    }

    static let logger: Logger = {
        var logger = Logger(label: "lodestone.simulation")
        logger.logLevel = .critical
        return logger
    }()
}

public struct SimulationError: Error {
    public var message: String
    public init(_ message: String) { self.message = message }
}
