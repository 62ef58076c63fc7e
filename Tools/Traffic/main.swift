import ArgumentParser
import FlipTraffic
import Foundation
import LogFormat
import LogIO
import LogStorage
import Logging
import Synchronization

/// Writes seeded flip traffic (FlipTraffic: leader elections, database roles, feature
/// flags across regions, autoscalers, secret rotation; with clock skew, regressions, lost
/// events, restarts, replays and storms) to a flip topic of a data directory (no server
/// running) or to a file of JSON lines for `lodestone produce`.
@main
struct TrafficCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lodestone-traffic",
        abstract: "Generate realistic flip traffic into a data directory's flip topic or a JSON-lines file.")

    @Option(help: "A data directory (created when missing; no server may hold it).") var data: String?
    @Option(help: "The flip topic to write (created with the traffic's polarity map when missing).") var topic = "flips"
    @Option(help: "Partitions of the topic when it is created.") var partitions = 4
    @Option(help: "A file to write JSON lines to instead (replayed events included, as sent).") var out: String?
    @Option(help: "Resources.") var resources = 10_000
    @Option(help: "Days of traffic.") var days = 60
    @Option(help: "Events in all, replays not counted (the span ends early when they are reached).") var events: Int64 = 50_000_000
    @Option(help: "Records per batch.") var batchRecords = 1_000
    @Flag(help: "Store batches uncompressed (default LZ4).") var plain = false
    @Option(help: "Seed.") var seed: UInt64 = 1

    func validate() throws {
        if (data == nil) == (out == nil) { throw ValidationError("give --data DIR or --out FILE") }
        if resources < 1 || days < 1 || events < 1 { throw ValidationError("--resources, --days and --events must be at least 1") }
        if !(1...Limits.batchRecordCountMax).contains(batchRecords) { throw ValidationError("--batch-records must be 1 to \(Limits.batchRecordCountMax)") }
    }

    func run() throws {
        var configuration = FlipTraffic.Configuration()
        configuration.resources = resources
        configuration.days = days
        configuration.events = events
        configuration.seed = seed
        var traffic = FlipTraffic(configuration)
        let started = Date()
        var stored: Int64 = 0
        var replays: Int64 = 0
        if let out {
            guard let handle = FileHandle(forWritingAtPath: out) ?? (FileManager.default.createFile(atPath: out, contents: nil) ? FileHandle(forWritingAtPath: out) : nil) else {
                throw ValidationError("cannot write \(out)")
            }
            try handle.truncate(atOffset: 0)
            while let hour = traffic.nextHour() {
                var text = ""
                for item in hour {
                    text += item.event.json(resolvedPolarity: item.event.polarity) + "\n"
                    if item.isReplay { replays += 1 } else { stored += 1 }
                }
                try handle.write(contentsOf: Data(text.utf8))
            }
            try handle.close()
        } else if let data {
            (stored, replays) = try writeStore(data, traffic: &traffic)
        }
        let seconds = Date().timeIntervalSince(started)
        print("{\"events\":\(stored),\"replays\":\(replays),\"resources\":\(resources),\"days\":\(days),\"seconds\":\(String(format: "%.1f", seconds))}")
    }

    /// Appends the traffic to the topic, batches per partition, up to 16 appends in flight;
    /// replayed events go alone (a flip topic refuses them, and would refuse their batch).
    func writeStore(_ directory: String, traffic: inout FlipTraffic) throws -> (Int64, Int64) {
        var logger = Logger(label: "lodestone-traffic")
        logger.logLevel = .warning
        let pool = IOThreadPool(threadCount: 2)
        defer { pool.shutdown() }
        let store = try LogStore.open(directory: directory, environment: StorageEnvironment(fileIO: PosixFileIO(), executor: pool, logger: logger))
        if store.topic(topic) == nil {
            try store.createTopic(name: topic, partitionCount: partitions, kind: .flip, polarityMap: FlipTraffic.polarityMap)
        }
        guard let configuration = store.topic(topic)?.configuration, configuration.kind == .flip else {
            throw ValidationError("\(topic) is not a flip topic")
        }
        let logs = try (0..<configuration.partitionCount).map { try store.partition(topic: topic, index: $0) }
        let inFlight = DispatchSemaphore(value: 16)
        let failure = Mutex<String?>(nil)
        let refusedReplays = Atomic<Int64>(0)
        func append(_ records: [FlipEvent], partition: Int, replay: Bool) {
            let batch = RecordBatch.make(values: records.map { ($0.key, $0.encodedValue()) }, timestamp: 0, compression: plain ? .none : .lz4).encoded()
            inFlight.wait()
            logs[partition].append(batch, ackMode: .durable) { result in
                defer { inFlight.signal() }
                switch result {
                case .success(.committed):
                    if replay { failure.withLock { $0 = $0 ?? "a replayed event was stored" } }
                case .success(.refused) where replay:
                    refusedReplays.add(1, ordering: .relaxed)
                case .success(let other):
                    failure.withLock { $0 = $0 ?? "an append was answered \(other)" }
                case .failure(let error):
                    failure.withLock { $0 = $0 ?? "\(error)" }
                }
            }
        }
        var pending = [[FlipEvent]](repeating: [], count: logs.count)
        var stored: Int64 = 0
        var replays: Int64 = 0
        while let hour = traffic.nextHour() {
            for item in hour {
                let partition = Partitioner.partition(forKey: item.event.key, partitionCount: logs.count)
                if item.isReplay {
                    // Its original may still wait in `pending`: send that first.
                    if !pending[partition].isEmpty {
                        append(pending[partition], partition: partition, replay: false)
                        pending[partition] = []
                    }
                    append([item.event], partition: partition, replay: true)
                    replays += 1
                    continue
                }
                stored += 1
                pending[partition].append(item.event)
                if pending[partition].count == batchRecords {
                    append(pending[partition], partition: partition, replay: false)
                    pending[partition] = []
                }
            }
            if let message = failure.withLock({ $0 }) { throw ValidationError(message) }
        }
        for partition in pending.indices where !pending[partition].isEmpty { append(pending[partition], partition: partition, replay: false) }
        for _ in 0..<16 { inFlight.wait() }
        for _ in 0..<16 { inFlight.signal() }
        if let message = failure.withLock({ $0 }) { throw ValidationError(message) }
        let semaphore = DispatchSemaphore(value: 0)
        let closed = Mutex<(any Error)?>(nil)
        Task {
            do { try await store.close() } catch { closed.withLock { $0 = error } }
            semaphore.signal()
        }
        semaphore.wait()
        if let error = closed.withLock({ $0 }) { throw error }
        if refusedReplays.load(ordering: .relaxed) != replays {
            throw ValidationError("\(replays) replayed events sent, \(refusedReplays.load(ordering: .relaxed)) refused")
        }
        return (stored, replays)
    }
}
