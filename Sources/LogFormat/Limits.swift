/// Every hard limit of Lodestone, in one place (design decision 9).
///
/// A configuration may choose smaller values where the storage layer allows it
/// (`StorageConfiguration`), never larger ones. The relations between limits are checked
/// by `Limits.check()` at start-up and in a test, so a change that breaks one fails fast.
public enum Limits {
    /// Largest RecordBatch accepted on append, header included (Kafka's default
    /// `message.max.bytes` is about 1 MiB too).
    public static let batchBytesMax = 1 << 20
    /// Most records in one batch.
    public static let batchRecordCountMax = 1 << 16
    /// Largest payload a compressed batch may expand to; bounds decompression bombs.
    public static let batchDecompressedBytesMax = 16 << 20
    /// Largest record key (the resource), in bytes.
    public static let recordKeyBytesMax = 4096
    /// Most headers on one record.
    public static let recordHeaderCountMax = 1024

    /// Largest segment file. Index entries store positions as 32-bit numbers, so a segment
    /// must stay below 4 GiB; Kafka's default is 1 GiB.
    public static let segmentBytesMax = 1 << 30
    /// Smallest segment size a configuration may choose (tests use small segments).
    public static let segmentBytesMin = 4096
    /// Largest single group write (one `pwrite` then one `fdatasync`). It is also the span
    /// at the end of the last segment in which recovery treats an invalid batch as a torn
    /// tail rather than corruption (design decision 6), so it stays modest.
    public static let groupWriteBytesMax = 4 << 20
    /// Largest number of appends acknowledged by one group write.
    public static let groupWriteAppendCountMax = 1 << 14
    /// Most bytes queued for one partition's writer before appends are refused as overloaded.
    public static let partitionQueuedBytesMax = 64 << 20
    /// Most appends queued for one partition's writer before appends are refused as overloaded.
    public static let partitionQueuedAppendCountMax = 1 << 16
    /// Bytes of log between two entries of the sparse indexes (Kafka's default is 4096).
    public static let indexIntervalBytes = 4096
    /// Most bytes one read returns (a first batch larger than the requested byte limit is
    /// still returned whole, and it is at most `batchBytesMax`).
    public static let readBytesMax = 64 << 20

    /// Longest topic name, in bytes (Kafka's limit).
    public static let topicNameBytesMax = 249
    /// Most partitions in one topic.
    public static let topicPartitionCountMax = 1024
    /// Most topics in one store.
    public static let storeTopicCountMax = 10_000
    /// Most partitions in one store, all topics together (each open partition holds a file
    /// descriptor per segment it reads and one writer).
    public static let storePartitionCountMax = 16_384
    /// Largest configuration file read from disk.
    public static let configurationFileBytesMax = 1 << 20
    /// Most segments in one partition.
    public static let partitionSegmentCountMax = 1 << 20

    /// Most named producers the registry keeps (design decision 8). Anonymous producers
    /// take only an id.
    public static let producerNamesMax = 100_000
    /// Longest producer name, in bytes.
    public static let producerNameBytesMax = 256
    /// Most producers whose sequence state one partition tracks (idle ones expire).
    public static let partitionProducersTrackedMax = 10_000
    /// Most resources whose `(epoch, seq)` one flip partition tracks; a record of a new
    /// resource past it is refused, and no resource is ever forgotten to make room.
    public static let partitionResourcesTrackedMax = 1_000_000
    /// Batches of one producer that one partition remembers for answering retries
    /// (Kafka's idempotent producer window).
    public static let producerBatchWindow = 5
    /// Largest replay-protection snapshot read back.
    public static let snapshotBytesMax = 512 << 20

    /// Checks the relations between the limits. A broken relation is a programming error.
    // MARK: Pauli-Z (Docs/spec/pauli-z.md; Docs/limits.md)

    /// Windows, hops and storm intervals, in milliseconds: at most the span of event times.
    public static let paulizDurationMillisecondsMax: Int64 = (1 << 53) - 1
    /// Overlapping windows per event (window / hop): each event updates that many rows.
    public static let paulizWindowsPerEventMax = 4_096
    /// Storm parameters, a topic's and a query's (`StormDefaults.problem`): the interval
    /// at most 366 days, the enter threshold at most 1,000,000 flips per interval.
    public static let stormIntervalMillisecondsMax: Int64 = 366 * 86_400_000
    public static let stormThresholdMax = 1_000_000
    /// Bytes of finished rows a query keeps in memory before spilling sorted runs
    /// (`lodestone pauliz --sort-memory` sets it per query).
    public static let paulizSortMemoryBytesDefault = 1 << 30
    /// Finished rows a topic's live state keeps before it forgets its older windows.
    public static let paulizLiveRowCountMax = 1_000_000
    /// Bytes of durable flip batches a topic's live-state feed holds for the ingest thread
    /// (while the state is built from the log, or while ingest falls behind); past it the
    /// feed drops them and the state is rebuilt from the log. Writers never wait on it.
    public static let paulizLiveFeedBytesMax = 256 << 20
    /// Events a server reads for one replayed query.
    public static let paulizReplayEventCountMax: Int64 = 200_000_000
    /// A segment summary keeps an exact list of names up to this many bytes, else a
    /// Bloom filter.
    public static let segmentSummaryExactBytesMax = 64 << 10
    /// A larger summary file is not trusted (its segment is read in full).
    public static let segmentSummaryFileBytesMax = 16 << 20

    public static func check() {
        precondition(batchBytesMax <= groupWriteBytesMax, "a batch must fit in one group write")
        precondition(groupWriteBytesMax < segmentBytesMax, "a group write must fit in a segment")
        precondition(segmentBytesMax < Int(UInt32.max), "index positions are 32-bit")
        precondition(segmentBytesMin >= RecordBatchHeader.size, "a segment holds at least a header")
        precondition(batchBytesMax <= partitionQueuedBytesMax, "one batch must fit in the queue")
        precondition(batchBytesMax <= readBytesMax, "a read can return any one batch")
        precondition(batchRecordCountMax <= groupWriteAppendCountMax * 4, "record counts stay proportional")
        precondition(recordKeyBytesMax < batchBytesMax, "a key fits in a batch")
        precondition(topicPartitionCountMax <= storePartitionCountMax, "a topic fits in a store")
        precondition(segmentSummaryExactBytesMax < segmentSummaryFileBytesMax, "an exact summary fits in a summary file")
        precondition(paulizWindowsPerEventMax <= batchRecordCountMax, "one event's rows stay few next to a batch's records")
    }
}
