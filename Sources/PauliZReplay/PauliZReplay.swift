import LogFormat
import LogIO
import LogStorage
import PauliZ

/// What a replay read.
public struct ReplayStatistics: Sendable, Equatable {
    public var partitions = 0
    public var segmentsRead = 0
    /// Sealed segments whose summary says they hold none of the selected resources.
    public var segmentsSkipped = 0
    public var batches = 0
    public var events: Int64 = 0
    /// Events of the selected resources, fed to the engine.
    public var eventsSelected: Int64 = 0
    public var bytesRead: Int64 = 0
    /// Bytes after the last valid batch of uncleanly stopped partitions, not read.
    public var tornBytes: Int64 = 0
}

/// Offline Pauli-Z (`lodestone pauliz --data DIR`): reads every partition of a flip
/// topic from a stopped server's data directory, read-only, into a `PauliZEngine`.
public enum PauliZReplay {
    /// The storm parameters and polarity map a query of `topic` uses: those it names, the
    /// topic's for the others (the one place a query's storm parameters are resolved: the
    /// server's replays and live state, and the command line, all come here).
    public static func topicDefaults(
        _ configuration: TopicConfiguration, intervalMilliseconds: Int64? = nil, enter: Int? = nil, exit: Int? = nil
    ) -> (storm: StormParameters, polarityMap: [String: Int8]) {
        let storm = configuration.storm
        return (StormParameters(intervalMilliseconds: intervalMilliseconds ?? storm.intervalMilliseconds, enter: enter ?? storm.enter, exit: exit ?? storm.exit),
                configuration.polarityMap ?? [:])
    }

    /// Runs `query` over the topic. `configure` sees the topic's configuration first and
    /// returns the query to run (so the caller can default storm parameters and take the
    /// polarity map from it). `progress` is called with bytes read and bytes in all.
    public static func run(
        directory: String, topic: String, filter: ResourceFilter = .all, fileIO: any FileIO = PosixFileIO(),
        rowsInMemoryMax: Int = PauliZLimits.rowsInMemoryDefault,
        configure: (TopicConfiguration) throws -> PauliZQuery,
        progress: ((_ done: Int64, _ total: Int64) -> Void)? = nil
    ) throws -> (PauliZResult, ReplayStatistics) {
        let reader = try DirectoryReader(directory: directory, fileIO: fileIO)
        let configuration = try reader.topicConfiguration(topic)
        guard configuration.kind == .flip else {
            throw PauliZError(.invalidArgument, "topic \(topic) is a \(configuration.kind.rawValue) topic; Pauli-Z reads flip topics")
        }
        let query = try configure(configuration)
        let engine = try PauliZEngine(query: query, rowsInMemoryMax: rowsInMemoryMax)
        let partitions = try (0..<configuration.partitionCount).map { index throws(StorageError) in try reader.partitionFiles(topic: topic, partition: index) }
        let total = partitions.reduce(0) { $0 + $1.bytes }
        var statistics = ReplayStatistics(partitions: partitions.count)
        var reported: Int64 = 0
        for files in partitions {
            var previousNextOffset: Int64?
            for segment in files.segments {
                try reader.requireContinuity(after: previousNextOffset, segment)
                if filter != .all, let summary = reader.summary(of: segment, in: files), !summary.mayHold(filter) {
                    engine.observe(time: summary.eventTimeMax)
                    statistics.segmentsSkipped += 1
                    previousNextOffset = nil
                    continue
                }
                let end = try reader.forEachBatch(in: segment, of: files) { header, bytes in
                    statistics.batches += 1
                    do {
                        let counts = try engine.ingest(batch: bytes, header: header, filter: filter)
                        statistics.events += counts.events
                        statistics.eventsSelected += counts.selected
                    } catch let error as FormatError {
                        throw StorageError.corruption(segment.path, "the batch at offset \(header.baseOffset) is not a batch of flip events: \(error.message)")
                    }
                    statistics.bytesRead += Int64(bytes.count)
                    if let progress, statistics.bytesRead - reported >= 16 << 20 {
                        reported = statistics.bytesRead
                        progress(statistics.bytesRead, total)
                    }
                }
                statistics.segmentsRead += 1
                statistics.tornBytes += end.unreadBytes
                previousNextOffset = end.nextOffset
            }
        }
        progress?(total, total)
        return (try engine.finish(), statistics)
    }
}

extension SegmentSummary {
    /// Whether the segment may hold a resource the filter keeps.
    func mayHold(_ filter: ResourceFilter) -> Bool {
        switch filter {
        case .all: return true
        case .exact(let resource): return mayContain(resource: resource)
        case .prefix(let prefix): return mayContain(prefix: prefix)
        }
    }
}

/// Server-side replay: the durable data of an open topic, read through its partitions
/// (the server's own read path, CRC-checked), up to each partition's durable end as it
/// was when the query started, so every partition is cut at one moment and the horizon
/// is that of the log as stored then.
public enum PauliZServerReplay {
    /// Events a server reads for one query at most; a query past it fails with the reason
    /// (it would hold an I/O thread for long).
    public static let eventsMax = Limits.paulizReplayEventCountMax

    public static func run(
        topic: LogStore.Topic, query: PauliZQuery, filter: ResourceFilter, eventsMax: Int64 = eventsMax
    ) throws -> (PauliZResult, ReplayStatistics) {
        guard topic.configuration.kind == .flip else {
            throw PauliZError(.invalidArgument, "topic \(topic.configuration.name) is a \(topic.configuration.kind.rawValue) topic; Pauli-Z reads flip topics")
        }
        let engine = try PauliZEngine(query: query)
        let ends = topic.partitions.map(\.offsets)
        var statistics = ReplayStatistics(partitions: topic.partitions.count)
        for (partition, offsets) in zip(topic.partitions, ends) {
            try forEachBatch(of: partition, from: offsets.start, to: offsets.durableEnd) { (header: RecordBatchHeader, batch: UnsafeRawBufferPointer) throws -> Void in
                let counts = try engine.ingest(batch: batch, header: header, filter: filter)
                statistics.batches += 1
                statistics.events += counts.events
                statistics.eventsSelected += counts.selected
                statistics.bytesRead += Int64(header.totalSize)
                if statistics.events > eventsMax {
                    throw PauliZError(.limitReached, "the query reads more than \(eventsMax) events of \(topic.configuration.name); ask a stopped server's data directory (lodestone pauliz --data)")
                }
            }
        }
        return (try engine.finish(), statistics)
    }

    /// Every batch of an open partition in [start, end) (durable data, CRC-checked by the
    /// partition's read path), in order.
    public static func forEachBatch(
        of partition: PartitionLog, from start: Int64, to end: Int64, _ body: (RecordBatchHeader, UnsafeRawBufferPointer) throws -> Void
    ) throws {
        var offset = start
        while offset < end {
            let read = try partition.read(from: offset, maxBytes: 4 << 20)
            if read.batchCount == 0 { return }
            var done = false
            try read.bytes.withUnsafeBytes { (raw: UnsafeRawBufferPointer) throws -> Void in
                var position = 0
                while position < raw.count {
                    let header = try RecordBatchHeader.read(UnsafeRawBufferPointer(rebasing: raw[position..<min(raw.count, position + RecordBatchHeader.size)]))
                    if header.baseOffset >= end {
                        done = true
                        return
                    }
                    try body(header, UnsafeRawBufferPointer(rebasing: raw[position..<(position + header.totalSize)]))
                    position += header.totalSize
                }
            }
            if done { return }
            offset = read.nextOffset
        }
    }
}
