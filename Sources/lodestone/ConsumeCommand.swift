import ArgumentParser
import Foundation
import LogClient
import LogFormat
import Synchronization
import WireProtocol

struct ConsumeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "consume",
        abstract: "Print records as JSON lines: their fields plus topic, partition, offset and append_time.",
        discussion: """
            From the earliest offset (or --from-offset, which needs --partition, or the first \
            record appended at or after --from-time), partition by partition in offset order, \
            ending at the end of durable data as it was when consume started. With --follow, \
            partitions interleave as records arrive and it never ends. --resource keeps only \
            that resource's records (on a flip topic it reads only the resource's partition).
            """)

    @OptionGroup var server: ServerOptions
    @Option(help: "The topic.") var topic: String
    @Option(help: "Only this partition.") var partition: Int?
    @Option(name: .customLong("from-offset"), help: "Start at this offset (needs --partition).") var fromOffset: Int64?
    @Option(name: .customLong("from-time"), help: "Start at the first record appended at or after this time.") var fromTime: String?
    @Option(help: "Only this resource's records.") var resource: String?
    @Flag(help: "Keep reading as records arrive; never ends.") var follow = false

    /// Connections a following consumer opens at most; partitions share them beyond that.
    static let followConnectionsMax = 16

    func validate() throws {
        if fromOffset != nil && partition == nil { throw ValidationError("--from-offset needs --partition") }
        if fromOffset != nil && fromTime != nil { throw ValidationError("give --from-offset or --from-time, not both") }
        if let fromOffset, fromOffset < 0 { throw ValidationError("--from-offset must be 0 or more") }
        if let partition, partition < 0 { throw ValidationError("--partition must be 0 or more") }
    }

    func run() async throws {
        try await reporting("consume") {
            let startTime = try fromTime.map { try parseTime($0, option: "--from-time") }
            let connection = try await server.connect()
            guard case .topic(let info) = try await connection.send(.describeTopic(topic)) else { throw CommandFailure("unexpected reply") }
            let count = Int(info.partitionCount)
            if let partition, partition >= count { throw CommandFailure("--partition \(partition) is outside 0...\(count - 1) of \(topic)", status: 2) }
            let key = resource.map { Array($0.utf8) }
            var selected = partition.map { [$0] } ?? Array(0..<count)
            if info.kind == .flip, let key {
                let home = Partitioner.partition(forKey: key, partitionCount: count)
                selected = selected.filter { $0 == home }
            }
            let polarityMap = info.polarityMap.map { Dictionary($0.map { ($0.state, $0.polarity) }, uniquingKeysWith: { first, _ in first }) }
            let render: @Sendable (ConsumedRecord) -> String? = { [topic] record in
                if let key, record.key != key { return nil }
                return RecordLines.line(for: record, topic: topic, kind: info.kind, polarityMap: polarityMap)
            }

            // Where each partition starts and (without --follow) ends: describe gave every
            // partition's start and durable end; only --from-time needs a question each.
            guard info.partitions.count == count else { throw CommandFailure("the server did not give the partitions' offsets") }
            var starts: [Int: Int64] = [:]
            var ends: [Int: Int64] = [:]
            for index in selected {
                let offsets = info.partitions[index]
                ends[index] = offsets.end
                if let fromOffset {
                    starts[index] = max(fromOffset, offsets.start)
                } else if let startTime {
                    let found = try await firstOffset(connection, partition: index, atOrAfter: startTime)
                    starts[index] = found < 0 ? offsets.end : found
                } else {
                    starts[index] = offsets.start
                }
            }
            if follow {
                await connection.close()
                try await followPartitions(selected, starts: starts, render: render)
            } else {
                defer { Task { await connection.close() } }
                let output = LineWriter()
                let position = Mutex((partition: 0, offset: Int64(0), end: Int64(0)))
                let progress = ProgressLine {
                    let now = position.withLock { $0 }
                    return "consume: \(output.linesWritten) records; partition \(now.partition) at offset \(now.offset) of \(now.end)"
                }
                for index in selected {
                    position.withLock { $0 = (index, starts[index]!, ends[index]!) }
                    try await readToEnd(connection, partition: index, from: starts[index]!, end: ends[index]!, render: render, output: output) { offset in
                        position.withLock { $0.offset = offset }
                    }
                }
                output.flush()
                await progress.finish("consume: \(output.linesWritten) records")
            }
        }
    }

    /// The first offset appended at or after `time` (-1 when none).
    func firstOffset(_ connection: LodestoneConnection, partition: Int, atOrAfter time: Int64) async throws -> Int64 {
        let request = ListOffsetsRequest(topic: topic, partition: UInt32(partition), mode: .time, time: time)
        guard case .listOffsets(let reply) = try await connection.send(.listOffsets(request)) else { throw CommandFailure("unexpected reply") }
        return reply.offset
    }

    /// Reads one partition from `start` up to `end` (the durable end when consume started).
    func readToEnd(
        _ connection: LodestoneConnection, partition: Int, from start: Int64, end: Int64, render: (ConsumedRecord) -> String?, output: LineWriter,
        reached: (Int64) -> Void
    ) async throws {
        guard start < end else { return }
        let consumer = PartitionConsumer(connection: connection, topic: topic, partition: partition, from: start, maxBytes: 1 << 20)
        defer { Task { await consumer.stop() } }
        while true {
            let before = await consumer.nextOffset
            guard before < end else { break }
            let (records, _) = try await consumer.next(wait: false)
            for record in records where record.offset < end {
                if let line = render(record) { output.write(line) }
            }
            let after = await consumer.nextOffset
            reached(after)
            // No records and no progress: what was below `end` is gone (removed by
            // retention or compaction while we read).
            if records.isEmpty, after <= before { break }
        }
    }

    /// Follows the partitions for ever, a long-polling consumer per connection when each has
    /// one partition, and round-robin polling when partitions share a connection.
    /// Connections that fail are opened again, resuming where they stopped; a refusal by
    /// the server ends the command.
    func followPartitions(_ partitions: [Int], starts: [Int: Int64], render: @escaping @Sendable (ConsumedRecord) -> String?) async throws {
        let output = LineWriter(flushEachLine: true)
        let groups = Dictionary(grouping: partitions.enumerated(), by: { $0.offset % Self.followConnectionsMax }).values.map { $0.map(\.element) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for members in groups {
                group.addTask {
                    var next = Dictionary(uniqueKeysWithValues: members.map { ($0, starts[$0]!) })
                    var backoff = 50
                    while !Task.isCancelled {
                        do {
                            let connection = try await server.connect()
                            backoff = 50
                            try await follow(connection, partitions: members, next: &next, render: render, output: output)
                        } catch ClientError.server(let refusal) {
                            // The server said no (token, topic, offset): following cannot go on.
                            throw ClientError.server(refusal)
                        } catch {
                            try await Task.sleep(for: .milliseconds(backoff))
                            backoff = min(backoff * 2, 2000)
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    func follow(_ connection: LodestoneConnection, partitions: [Int], next: inout [Int: Int64], render: (ConsumedRecord) -> String?, output: LineWriter) async throws {
        defer { Task { await connection.close() } }
        let consumers = partitions.map { PartitionConsumer(connection: connection, topic: topic, partition: $0, from: next[$0]!, maxWaitMilliseconds: 1000) }
        var idleRounds = 0
        while true {
            var any = false
            for (partition, consumer) in zip(partitions, consumers) {
                let (records, _) = try await consumer.next(wait: consumers.count == 1)
                for record in records {
                    if let line = render(record) { output.write(line) }
                }
                any = any || !records.isEmpty
                next[partition] = await consumer.nextOffset
            }
            if consumers.count > 1 {
                idleRounds = any ? 0 : idleRounds + 1
                if idleRounds > 0 { try await Task.sleep(for: .milliseconds(min(20 * idleRounds, 200))) }
            }
        }
    }
}

/// Writes lines to stdout in large writes (or one by one when following, so a reader of
/// the pipe sees each record as it arrives).
final class LineWriter: Sendable {
    let buffer = Mutex("")
    let written = Atomic<Int>(0)
    let flushEachLine: Bool

    var linesWritten: Int { written.load(ordering: .relaxed) }

    init(flushEachLine: Bool = false) { self.flushEachLine = flushEachLine }

    func write(_ line: String) {
        written.add(1, ordering: .relaxed)
        buffer.withLock { text in
            text += line
            text += "\n"
            if flushEachLine || text.utf8.count >= 1 << 16 {
                writeAll(text, to: STDOUT_FILENO)
                text = ""
            }
        }
    }

    func flush() {
        buffer.withLock { text in
            writeAll(text, to: STDOUT_FILENO)
            text = ""
        }
    }
}
