import Benchmark
import Foundation
import LogFormat
import LogIO
import LogStorage
import Logging
import Synchronization

// Run: swift package benchmark --target StorageBenchmarks
//
// Each benchmark reports what it measured as custom metrics (GB/s, MB/s, events/s,
// fsyncs/s, events per fsync), computed from the monotonic clock around the measured work of each iteration.
// The disk benchmarks write under LODESTONE_BENCH_DIR (default .build/benchmark-data, on
// the same file system as the checkout) and run side by side in one run, so group commit
// and the plain write+fdatasync loops meet the same disk. Results: Docs/performance.md.

let megabytesPerSecond = BenchmarkMetric.custom("MB/s", polarity: .prefersLarger, useScalingFactor: false)
let eventsPerSecond = BenchmarkMetric.custom("events/s", polarity: .prefersLarger, useScalingFactor: false)
let fsyncsPerSecond = BenchmarkMetric.custom("fsyncs/s", polarity: .prefersLarger, useScalingFactor: false)
let eventsPerFsync = BenchmarkMetric.custom("events/fsync", polarity: .prefersLarger, useScalingFactor: false)
let fsyncMicroseconds = BenchmarkMetric.custom("fsync latency (us)", polarity: .prefersSmaller, useScalingFactor: false)

/// Bytes per second from a byte count and elapsed nanoseconds.
func rate(_ count: Double, _ nanoseconds: UInt64) -> Double { count * 1e9 / Double(max(nanoseconds, 1)) }

func flipJSON(_ index: Int) -> [UInt8] {
    Array("{\"resource\":\"prod/eu-1/service-\(index % 97)/leader\",\"from\":\"node-\(index % 3)\",\"to\":\"node-\((index + 1) % 3)\",\"polarity\":\(index % 2 == 0 ? 1 : -1),\"actor\":\"raft\",\"reason\":\"lease-expired\",\"epoch\":\(index / 1000),\"seq\":\(index),\"time\":\(1_764_000_000_000 + index * 250)}\n".utf8)
}

/// About 1 MiB of flip events as JSON lines.
let flipCorpus: [UInt8] = {
    var bytes: [UInt8] = []
    var index = 0
    while bytes.count < 1 << 20 {
        bytes += flipJSON(index)
        index += 1
    }
    return bytes
}()

/// A one-record batch of exactly `size` bytes.
func batchOfSize(_ size: Int) -> [UInt8] {
    var valueSize = size - 80
    while true {
        let batch = RecordBatch.make(values: [(Array("prod/eu-1/leader".utf8), Array(repeating: 0x61, count: valueSize))], timestamp: 0).encoded()
        if batch.count == size { return batch }
        valueSize += size - batch.count
    }
}

let oneMebibyteOfZeros = [UInt8](repeating: 0, count: 1 << 20)

let benchmarkDirectory: String = {
    let base = ProcessInfo.processInfo.environment["LODESTONE_BENCH_DIR"] ?? FileManager.default.currentDirectoryPath + "/.build/benchmark-data"
    let path = base + "/run-\(getpid())"
    try? FileManager.default.removeItem(atPath: path)
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}()

let quiet: Logger = {
    var logger = Logger(label: "benchmark")
    logger.logLevel = .critical
    return logger
}()

/// The physical reference: one pwrite of an event and one fdatasync, repeated, at the end
/// of what the loop wrote so far; in a new file, or in one pre-written with zeros (then the
/// position wraps before the zeros run out).
final class PlainLoop: @unchecked Sendable {
    let file: any StorageFile
    let prewrittenBytes: Int64
    private var position: Int64 = 0

    init(name: String, prewrittenBytes: Int64) throws {
        file = try PosixFileIO().open(benchmarkDirectory + "/" + name, mode: .createNew)
        self.prewrittenBytes = prewrittenBytes
        var written: Int64 = 0
        while written < prewrittenBytes {
            try file.writeAll(oneMebibyteOfZeros, at: written)
            written += Int64(oneMebibyteOfZeros.count)
        }
        try file.dataSync()
    }

    /// Runs the loop `count` times; returns the elapsed nanoseconds.
    func run(_ event: [UInt8], count: Int) throws -> UInt64 {
        if prewrittenBytes > 0 && position + Int64(count * event.count) > prewrittenBytes { position = 0 }
        let started = MonotonicClock.nanoseconds()
        for _ in 0..<count {
            try file.writeAll(event, at: position)
            try file.dataSync()
            position += Int64(event.count)
        }
        return MonotonicClock.nanoseconds() - started
    }
}

/// One partition per benchmark, opened at first use and kept for every iteration, with
/// the store's producer registry beside it.
final class PartitionHolder: Sendable {
    let name: String
    let pool = IOThreadPool(threadCount: 2)
    let log: PartitionLog
    let registry: ProducerRegistry

    init(name: String, kind: TopicKind = .raw) {
        self.name = name
        let directory = benchmarkDirectory + "/" + name
        try! FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        registry = try! ProducerRegistry.open(directory: directory, fileIO: PosixFileIO(), logger: quiet)
        log = try! PartitionLog.open(
            directory: directory + "/0", topic: TopicConfiguration(name: name, partitionCount: 1, kind: kind, createdAt: 0), partition: 0,
            environment: StorageEnvironment(fileIO: PosixFileIO(), configuration: StorageConfiguration(), clock: SystemWallClock(), executor: pool, logger: quiet),
            registry: registry)
    }
}

/// `count` partitions of one name, their writers on one elastic pool (as `lodestone serve`
/// runs them) or each on a thread of its own.
final class PartitionSet: Sendable {
    let logs: [PartitionLog]
    let pools: [IOThreadPool]

    init(name: String, count: Int, threadPerPartition: Bool) {
        let pools = threadPerPartition
            ? (0..<count).map { IOThreadPool(threadCount: 1, name: "lodestone-writer-\($0)") }
            : [IOThreadPool(writersMax: 64)]
        self.pools = pools
        logs = (0..<count).map { index in
            let directory = benchmarkDirectory + "/" + name + "/\(index)"
            try! FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            return try! PartitionLog.open(
                directory: directory, topic: name, partition: index,
                environment: StorageEnvironment(fileIO: PosixFileIO(), configuration: StorageConfiguration(), clock: SystemWallClock(), executor: pools[threadPerPartition ? index : 0], logger: quiet))
        }
    }

    /// Closed-loop appenders on every partition at once; returns the elapsed nanoseconds.
    func run(batch: [UInt8], appendersPerPartition: Int, perAppender: Int) async throws -> UInt64 {
        let started = MonotonicClock.nanoseconds()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for log in logs {
                group.addTask { try await closedLoop(log, batch: batch, appenders: appendersPerPartition, perAppender: perAppender) }
            }
            try await group.waitForAll()
        }
        return MonotonicClock.nanoseconds() - started
    }
}

/// A producer's batch for its next sequence: the producer fields set and the CRC
/// recomputed, as an idempotent producer does for every batch.
func sequenced(_ batch: [UInt8], _ identity: ProducerIdentity, sequence: Int32) -> [UInt8] {
    var bytes = batch
    ByteWriter.setInteger(identity.producerId, at: RecordBatchHeader.Field.producerId, in: &bytes)
    ByteWriter.setInteger(identity.epoch, at: RecordBatchHeader.Field.producerEpoch, in: &bytes)
    ByteWriter.setInteger(sequence, at: RecordBatchHeader.Field.baseSequence, in: &bytes)
    let crc = bytes.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[RecordBatchHeader.Field.attributes...])) }
    ByteWriter.setInteger(crc, at: RecordBatchHeader.Field.crc, in: &bytes)
    return bytes
}

/// A one-record flip batch of about 200 bytes: resource `resource`, `(epoch 1, seq)`.
func flipBatch(resource: String, seq: Int64) -> [UInt8] {
    let event = FlipEvent(resource: resource, from: "node-a", to: "node-b", polarity: 1, actor: "benchmark",
                          reason: String(repeating: "r", count: 80), epoch: 1, seq: seq, time: 1_764_000_000_000 + seq)
    return RecordBatch.make(values: [(event.key, event.encodedValue())], timestamp: 0).encoded()
}

/// Closed-loop appenders that are idempotent producers: each has its own identity and
/// sequence; on a flip topic each also owns a resource whose seq it advances.
func idempotentClosedLoop(_ holder: PartitionHolder, identities: [ProducerIdentity], batch: [UInt8], flip: Bool, perAppender: Int, round: Int) async throws {
    let log = holder.log
    try await withThrowingTaskGroup(of: Void.self) { group in
        for (index, identity) in identities.enumerated() {
            group.addTask {
                for step in 0..<perAppender {
                    let sequence = Int32(round * perAppender + step)
                    let base = flip ? flipBatch(resource: "resource-\(index)", seq: Int64(sequence) + 1) : batch
                    let outcome = try await log.append(sequenced(base, identity, sequence: sequence), ackMode: .durable)
                    guard case .committed = outcome else { fatalError("benchmark append was answered \(outcome)") }
                }
            }
        }
        try await group.waitForAll()
    }
}

/// `appenders` tasks, each appending `perAppender` batches and awaiting each durable ack.
func closedLoop(_ log: PartitionLog, batch: [UInt8], appenders: Int, perAppender: Int) async throws {
    try await withThrowingTaskGroup(of: Void.self) { group in
        for _ in 0..<appenders {
            group.addTask {
                for _ in 0..<perAppender { _ = try await log.append(batch, ackMode: .durable) }
            }
        }
        try await group.waitForAll()
    }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput], warmupIterations: 1, maxDuration: .seconds(4), maxIterations: 200)

    // MARK: CRC-32C

    let megabyte = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761) }
    for implementation in [CRC32C.Implementation.hardware, .software] where implementation == .software || CRC32C.implementation == .hardware {
        Benchmark("CRC-32C \(implementation) 1 MiB", configuration: .init(metrics: [megabytesPerSecond], maxIterations: 2000)) { benchmark in
            let rounds = 16
            let started = MonotonicClock.nanoseconds()
            megabyte.withUnsafeBytes { raw in
                for _ in 0..<rounds { blackHole(CRC32C.checksum(raw, using: implementation)) }
            }
            let elapsed = MonotonicClock.nanoseconds() - started
            benchmark.measurement(megabytesPerSecond, Int(rate(Double(rounds << 20), elapsed) / 1e6))
        }
    }

    // MARK: LZ4

    Benchmark("LZ4 compress flip JSON 1 MiB", configuration: .init(metrics: [megabytesPerSecond])) { benchmark in
        let started = MonotonicClock.nanoseconds()
        let frame = flipCorpus.withUnsafeBytes { LZ4Frame.compress($0) }
        let elapsed = MonotonicClock.nanoseconds() - started
        blackHole(frame)
        benchmark.measurement(megabytesPerSecond, Int(rate(Double(flipCorpus.count), elapsed) / 1e6))
    }
    let compressedCorpus = flipCorpus.withUnsafeBytes { LZ4Frame.compress($0) }
    // The high-compression level a cold segment's rewrite would use, and what it saves.
    let savedPercent = BenchmarkMetric.custom("bytes saved against the fast level (%)", polarity: .prefersLarger, useScalingFactor: false)
    Benchmark("LZ4 HC level 9 compress flip JSON 1 MiB", configuration: .init(metrics: [megabytesPerSecond, savedPercent], maxIterations: 100)) { benchmark in
        let fast = flipCorpus.withUnsafeBytes { LZ4Frame.compress($0) }.count
        let started = MonotonicClock.nanoseconds()
        let frame = flipCorpus.withUnsafeBytes { LZ4Frame.compress($0, level: LZ4Frame.highCompressionDefault) }
        let elapsed = MonotonicClock.nanoseconds() - started
        benchmark.measurement(megabytesPerSecond, Int(rate(Double(flipCorpus.count), elapsed) / 1e6))
        benchmark.measurement(savedPercent, (fast - frame.count) * 100 / fast)
    }

    Benchmark("LZ4 decompress flip JSON 1 MiB", configuration: .init(metrics: [megabytesPerSecond])) { benchmark in
        let started = MonotonicClock.nanoseconds()
        let plain = try compressedCorpus.withUnsafeBytes { try LZ4Frame.decompress($0, outputBytesMax: 2 << 20) }
        let elapsed = MonotonicClock.nanoseconds() - started
        blackHole(plain)
        benchmark.measurement(megabytesPerSecond, Int(rate(Double(flipCorpus.count), elapsed) / 1e6))
    }

    // MARK: Batch codec

    for codec in [CompressionCodec.none, .lz4] {
        let batch = RecordBatch.make(values: (0..<100).map { (Array("prod/eu-1/service-\($0 % 7)/leader".utf8), flipJSON($0)) }, timestamp: 1_764_000_000_000, compression: codec)
        let bytes = batch.encoded()
        Benchmark("Batch encode 100 flip records (\(codec))", configuration: .init(metrics: [.throughput, .wallClock], scalingFactor: .kilo)) { benchmark in
            for _ in benchmark.scaledIterations { blackHole(batch.encoded()) }
        }
        Benchmark("Batch validate 100 flip records (\(codec))", configuration: .init(metrics: [.throughput, .wallClock], scalingFactor: .kilo)) { benchmark in
            for _ in benchmark.scaledIterations { blackHole(try RecordBatchValidator.validate(bytes)) }
        }
        Benchmark("Batch decode 100 flip records (\(codec))", configuration: .init(metrics: [.throughput, .wallClock], scalingFactor: .kilo)) { benchmark in
            for _ in benchmark.scaledIterations { blackHole(try RecordBatch.decode(bytes)) }
        }
    }

    // MARK: The disk: plain write + fdatasync loops of 200-byte appends

    let event = batchOfSize(200)
    for prewritten in [false, true] {
        let loop = Mutex<PlainLoop?>(nil)
        Benchmark("Disk: 200 B write+fdatasync loop, \(prewritten ? "pre-written" : "new") file", configuration: .init(metrics: [eventsPerSecond, megabytesPerSecond], maxIterations: 40)) { benchmark in
            let current = try loop.withLock { loop in
                if loop == nil { loop = try PlainLoop(name: prewritten ? "plain-prewritten.log" : "plain-new.log", prewrittenBytes: prewritten ? 64 << 20 : 0) }
                return loop!
            }
            let count = 500
            let elapsed = try current.run(event, count: count)
            benchmark.measurement(eventsPerSecond, Int(rate(Double(count), elapsed)))
            benchmark.measurement(megabytesPerSecond, Int(rate(Double(count * event.count), elapsed) / 1e6))
        }
    }

    // MARK: Group commit: closed-loop appenders, each awaiting its durable ack

    // Idempotent producers against the plain appends above: 64 appenders, each its own
    // producer; on a raw topic, and on a flip topic (record checks and resource fencing too).
    for flip in [false, true] {
        let state = Mutex<(holder: PartitionHolder, identities: [ProducerIdentity], round: Int)?>(nil)
        Benchmark("Group commit: 64 appenders, 200 B durable, idempotent producers\(flip ? ", flip topic" : "")", configuration: .init(
            metrics: [eventsPerSecond, megabytesPerSecond, fsyncsPerSecond, eventsPerFsync, fsyncMicroseconds], maxIterations: 40)
        ) { benchmark in
            let (holder, identities, round) = try state.withLock { state in
                if state == nil {
                    let holder = PartitionHolder(name: "idempotent-\(flip ? "flip" : "raw")", kind: flip ? .flip : .raw)
                    state = (holder, try (0..<64).map { _ in try holder.registry.initialize(name: nil) }, 0)
                }
                defer { state!.round += 1 }
                return state!
            }
            let perAppender = 100
            let before = holder.log.statistics
            let started = MonotonicClock.nanoseconds()
            try await idempotentClosedLoop(holder, identities: identities, batch: event, flip: flip, perAppender: perAppender, round: round)
            let elapsed = MonotonicClock.nanoseconds() - started
            let after = holder.log.statistics
            let fsyncs = after.fsyncCount - before.fsyncCount
            let events = 64 * perAppender
            benchmark.measurement(eventsPerSecond, Int(rate(Double(events), elapsed)))
            benchmark.measurement(megabytesPerSecond, Int(rate(Double(events * event.count), elapsed) / 1e6))
            benchmark.measurement(fsyncsPerSecond, Int(rate(Double(fsyncs), elapsed)))
            benchmark.measurement(eventsPerFsync, events / max(fsyncs, 1))
            benchmark.measurement(fsyncMicroseconds, Int((after.fsyncNanosecondsTotal - before.fsyncNanosecondsTotal) / UInt64(max(fsyncs, 1)) / 1000))
        }
    }

    // The same comparison, paired: each iteration runs a plain round and an idempotent
    // round back to back (alternating which goes first), so the disk's drift from one
    // benchmark to the next cannot pass for a cost; the ratio is taken within each pair.
    let plainRate = BenchmarkMetric.custom("plain events/s", polarity: .prefersLarger, useScalingFactor: false)
    let idempotentRate = BenchmarkMetric.custom("idempotent events/s", polarity: .prefersLarger, useScalingFactor: false)
    let ratio = BenchmarkMetric.custom("idempotent / plain (%)", polarity: .prefersLarger, useScalingFactor: false)
    let paired = Mutex<(plain: PartitionHolder, idempotent: PartitionHolder, identities: [ProducerIdentity], round: Int)?>(nil)
    Benchmark("Group commit: 64 appenders, idempotent against plain, paired", configuration: .init(metrics: [plainRate, idempotentRate, ratio], maxIterations: 60)) { benchmark in
        let (plain, idempotent, identities, round) = try paired.withLock { state in
            if state == nil {
                let idempotent = PartitionHolder(name: "paired-idempotent")
                state = (PartitionHolder(name: "paired-plain"), idempotent, try (0..<64).map { _ in try idempotent.registry.initialize(name: nil) }, 0)
            }
            defer { state!.round += 1 }
            return state!
        }
        let perAppender = 50
        func plainRound() async throws -> UInt64 {
            let started = MonotonicClock.nanoseconds()
            try await closedLoop(plain.log, batch: event, appenders: 64, perAppender: perAppender)
            return MonotonicClock.nanoseconds() - started
        }
        func idempotentRound() async throws -> UInt64 {
            let started = MonotonicClock.nanoseconds()
            try await idempotentClosedLoop(idempotent, identities: identities, batch: event, flip: false, perAppender: perAppender, round: round)
            return MonotonicClock.nanoseconds() - started
        }
        let (plainTime, idempotentTime): (UInt64, UInt64)
        if round % 2 == 0 {
            let first = try await plainRound()
            plainTime = first
            idempotentTime = try await idempotentRound()
        } else {
            let first = try await idempotentRound()
            idempotentTime = first
            plainTime = try await plainRound()
        }
        let events = Double(64 * perAppender)
        benchmark.measurement(plainRate, Int(rate(events, plainTime)))
        benchmark.measurement(idempotentRate, Int(rate(events, idempotentTime)))
        benchmark.measurement(ratio, Int(Double(plainTime) / Double(idempotentTime) * 100))
    }

    // Where partition writers run (issue 10 asks to measure it): one elastic pool whose
    // threads any active partition's writer takes, against a thread of its own for each
    // partition. Paired like the comparison above: each iteration runs both, alternating
    // which goes first; 4 partitions, 16 closed-loop appenders each, 200 B durable.
    let poolRate = BenchmarkMetric.custom("elastic pool events/s", polarity: .prefersLarger, useScalingFactor: false)
    let dedicatedRate = BenchmarkMetric.custom("thread per partition events/s", polarity: .prefersLarger, useScalingFactor: false)
    let dedicatedRatio = BenchmarkMetric.custom("thread per partition / pool (%)", polarity: .prefersLarger, useScalingFactor: false)
    let writerSets = Mutex<(pool: PartitionSet, dedicated: PartitionSet, round: Int)?>(nil)
    Benchmark("Writers: 4 partitions x 16 appenders, elastic pool against a thread per partition, paired", configuration: .init(
        metrics: [poolRate, dedicatedRate, dedicatedRatio], maxIterations: 40)
    ) { benchmark in
        let (pool, dedicated, round) = writerSets.withLock { state in
            if state == nil {
                state = (PartitionSet(name: "writers-pool", count: 4, threadPerPartition: false), PartitionSet(name: "writers-dedicated", count: 4, threadPerPartition: true), 0)
            }
            defer { state!.round += 1 }
            return state!
        }
        let perAppender = 40
        let (poolTime, dedicatedTime): (UInt64, UInt64)
        if round % 2 == 0 {
            let first = try await pool.run(batch: event, appendersPerPartition: 16, perAppender: perAppender)
            (poolTime, dedicatedTime) = (first, try await dedicated.run(batch: event, appendersPerPartition: 16, perAppender: perAppender))
        } else {
            let first = try await dedicated.run(batch: event, appendersPerPartition: 16, perAppender: perAppender)
            (poolTime, dedicatedTime) = (try await pool.run(batch: event, appendersPerPartition: 16, perAppender: perAppender), first)
        }
        let events = Double(4 * 16 * perAppender)
        benchmark.measurement(poolRate, Int(rate(events, poolTime)))
        benchmark.measurement(dedicatedRate, Int(rate(events, dedicatedTime)))
        benchmark.measurement(dedicatedRatio, Int(Double(poolTime) / Double(dedicatedTime) * 100))
    }

    for (appenders, perAppender) in [(1, 500), (8, 200), (64, 100)] {
        let holder = Mutex<PartitionHolder?>(nil)
        Benchmark("Group commit: \(appenders) appenders, 200 B durable", configuration: .init(
            metrics: [eventsPerSecond, megabytesPerSecond, fsyncsPerSecond, eventsPerFsync, fsyncMicroseconds], maxIterations: 40)
        ) { benchmark in
            let log = holder.withLock { holder in
                if holder == nil { holder = PartitionHolder(name: "group-\(appenders)") }
                return holder!.log
            }
            let before = log.statistics
            let fsyncsBefore = before.fsyncCount
            let started = MonotonicClock.nanoseconds()
            try await closedLoop(log, batch: event, appenders: appenders, perAppender: perAppender)
            let elapsed = MonotonicClock.nanoseconds() - started
            let fsyncs = log.statistics.fsyncCount - fsyncsBefore
            let events = appenders * perAppender
            benchmark.measurement(eventsPerSecond, Int(rate(Double(events), elapsed)))
            benchmark.measurement(megabytesPerSecond, Int(rate(Double(events * event.count), elapsed) / 1e6))
            benchmark.measurement(fsyncsPerSecond, Int(rate(Double(fsyncs), elapsed)))
            benchmark.measurement(eventsPerFsync, events / max(fsyncs, 1))
            let fsyncNanoseconds = log.statistics.fsyncNanosecondsTotal - before.fsyncNanosecondsTotal
            benchmark.measurement(fsyncMicroseconds, Int(fsyncNanoseconds / UInt64(max(fsyncs, 1)) / 1000))
        }
    }
}
