import LogFormat

/// The settings of a store's partitions. Every value is bounded by `Limits`; `check()`
/// refuses a configuration outside them, or whose values contradict each other.
public struct StorageConfiguration: Sendable, Equatable {
    /// A segment rolls when the next group write would take it past this size.
    public var segmentBytes = 256 << 20
    /// A non-empty segment rolls when its first batch is older than this (append time).
    public var segmentAgeMilliseconds: Int64 = 7 * 24 * 3_600_000
    /// Largest group write; also the torn-tail window of recovery (design decision 6).
    public var groupWriteBytesMax = Limits.groupWriteBytesMax
    /// Queue bounds of one partition's writer; beyond them appends are refused as overloaded.
    public var queuedBytesMax = Limits.partitionQueuedBytesMax
    public var queuedAppendCountMax = Limits.partitionQueuedAppendCountMax
    /// Bytes of log between two sparse index entries.
    public var indexIntervalBytes = Limits.indexIntervalBytes
    /// The active segment's index files (its recovery point) are rewritten after this many
    /// bytes, so recovery after a crash re-reads at most about this much.
    public var recoveryCheckpointIntervalBytes = 16 << 20
    /// Zeros written ahead of the active segment's end, in chunks of this size (0: none;
    /// never past `segmentBytes`).
    /// Syncing data into space that is already written skips the inode update that growing
    /// a file costs on every fsync (Docs/performance.md has the measurements); sealing and
    /// clean shutdown trim what is left, and recovery finds the end of data by checksum and
    /// by the last non-zero byte, never by file size.
    public var preallocationBytes = 4 << 20
    /// A producer idle this long (by append time) is forgotten by a partition; its next
    /// batch, unless it starts a new sequence at 0, is answered `unknown_producer`.
    public var producerExpirationMilliseconds: Int64 = 7 * 24 * 3_600_000
    /// Producers and resources one partition tracks (at most the hard limits).
    public var producersTrackedMax = Limits.partitionProducersTrackedMax
    public var resourcesTrackedMax = Limits.partitionResourcesTrackedMax
    /// Limits applied to every appended batch.
    public var batchLimits = BatchLimits()

    public init() {}

    public func check() throws(StorageError) {
        func require(_ condition: Bool, _ message: String) throws(StorageError) {
            if !condition { throw StorageError(.invalidArgument, "configuration: \(message)") }
        }
        try require((Limits.segmentBytesMin...Limits.segmentBytesMax).contains(segmentBytes),
                    "segmentBytes \(segmentBytes) is outside \(Limits.segmentBytesMin)...\(Limits.segmentBytesMax)")
        try require(segmentAgeMilliseconds > 0, "segmentAgeMilliseconds must be positive")
        try require((1...Limits.groupWriteBytesMax).contains(groupWriteBytesMax),
                    "groupWriteBytesMax \(groupWriteBytesMax) is outside 1...\(Limits.groupWriteBytesMax)")
        try require((1...Limits.batchBytesMax).contains(batchLimits.batchBytesMax),
                    "batchBytesMax \(batchLimits.batchBytesMax) is outside 1...\(Limits.batchBytesMax)")
        try require(batchLimits.batchBytesMax <= groupWriteBytesMax, "a batch must fit in one group write")
        try require(batchLimits.batchBytesMax <= segmentBytes, "a batch must fit in a segment")
        try require(batchLimits.recordCountMax <= Limits.batchRecordCountMax, "recordCountMax exceeds \(Limits.batchRecordCountMax)")
        try require(batchLimits.decompressedBytesMax <= Limits.batchDecompressedBytesMax, "decompressedBytesMax exceeds \(Limits.batchDecompressedBytesMax)")
        try require((batchLimits.batchBytesMax...Limits.partitionQueuedBytesMax).contains(queuedBytesMax),
                    "queuedBytesMax \(queuedBytesMax) is outside \(batchLimits.batchBytesMax)...\(Limits.partitionQueuedBytesMax)")
        try require((1...Limits.partitionQueuedAppendCountMax).contains(queuedAppendCountMax),
                    "queuedAppendCountMax is outside 1...\(Limits.partitionQueuedAppendCountMax)")
        try require(indexIntervalBytes >= RecordBatchHeader.size, "indexIntervalBytes is below one batch header")
        try require(recoveryCheckpointIntervalBytes >= indexIntervalBytes, "recoveryCheckpointIntervalBytes is below indexIntervalBytes")
        try require(producerExpirationMilliseconds > 0, "producerExpirationMilliseconds must be positive")
        try require((1...Limits.partitionProducersTrackedMax).contains(producersTrackedMax), "producersTrackedMax is outside 1...\(Limits.partitionProducersTrackedMax)")
        try require((1...Limits.partitionResourcesTrackedMax).contains(resourcesTrackedMax), "resourcesTrackedMax is outside 1...\(Limits.partitionResourcesTrackedMax)")
        try require((0...Limits.segmentBytesMax).contains(preallocationBytes), "preallocationBytes \(preallocationBytes) is outside 0...\(Limits.segmentBytesMax)")
    }
}
