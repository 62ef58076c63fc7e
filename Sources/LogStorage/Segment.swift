import LogFormat
import LogIO

/// The open files of one segment. Immutable once made; the `.log` handle serves the
/// writer (active segment) and concurrent readers alike, since every access is a pread
/// or pwrite at an absolute position.
final class SegmentHandle: Sendable {
    let baseOffset: Int64
    let logPath: String
    let indexPath: String
    let timeIndexPath: String
    let file: any StorageFile

    init(directory: String, baseOffset: Int64, file: any StorageFile) {
        self.baseOffset = baseOffset
        self.logPath = joinPath(directory, SegmentFileName.name(baseOffset: baseOffset, kind: .log))
        self.indexPath = joinPath(directory, SegmentFileName.name(baseOffset: baseOffset, kind: .index))
        self.timeIndexPath = joinPath(directory, SegmentFileName.name(baseOffset: baseOffset, kind: .timeIndex))
        self.file = file
    }
}

/// What the partition knows about one segment: how much is written and synced, where its
/// batches are (the sparse indexes, kept in memory), and its offsets and times.
///
/// The `.log` file is the source of truth; everything here can be rebuilt by scanning it.
/// A segment's index entries come in pairs: `offsetEntries[k]` and `timeEntries[k]`
/// describe the same batch.
struct SegmentState {
    let handle: SegmentHandle
    /// Bytes of batches written to the `.log` file.
    var size: Int64 = 0
    /// The file's length: `size` plus the pre-written zeros after it (active segment only).
    var fileSize: Int64 = 0
    /// Bytes covered by a completed fsync: what readers may see.
    var durableSize: Int64 = 0
    /// Offset after the last written batch.
    var nextOffset: Int64
    /// Offset after the last synced batch.
    var durableNextOffset: Int64
    /// Append time of the last written batch (-1 when empty).
    var maxTimestamp: Int64 = -1
    /// Append time of the last synced batch (-1 when none).
    var durableMaxTimestamp: Int64 = -1
    /// Position of the last written batch (-1 when empty).
    var lastBatchPosition: Int64 = -1
    var durableLastBatchPosition: Int64 = -1
    /// Append time of the first batch, for roll by age.
    var firstTimestamp: Int64?
    var offsetEntries: [OffsetIndexEntry] = []
    var timeEntries: [TimeIndexEntry] = []
    var bytesSinceIndexEntry = 0
    var isSealed = false

    var baseOffset: Int64 { handle.baseOffset }

    init(handle: SegmentHandle) {
        self.handle = handle
        nextOffset = handle.baseOffset
        durableNextOffset = handle.baseOffset
    }

    /// Adds a written batch: index entries every `indexIntervalBytes`, sizes, offsets, times.
    mutating func recordWritten(position: Int64, size batchSize: Int, baseOffset: Int64, nextOffset batchNext: Int64, appendTime: Int64, indexIntervalBytes: Int) {
        precondition(position == size, "batches are appended in order without gaps")
        precondition(baseOffset == nextOffset, "offsets are dense: \(baseOffset) follows \(nextOffset)")
        if position > 0 && bytesSinceIndexEntry >= indexIntervalBytes {
            let relative = UInt32(baseOffset - self.baseOffset)
            offsetEntries.append(OffsetIndexEntry(relativeOffset: relative, position: UInt32(position)))
            timeEntries.append(TimeIndexEntry(timestamp: appendTime, relativeOffset: relative))
            bytesSinceIndexEntry = 0
        }
        bytesSinceIndexEntry += batchSize
        size = position + Int64(batchSize)
        nextOffset = batchNext
        maxTimestamp = appendTime
        lastBatchPosition = position
        if firstTimestamp == nil { firstTimestamp = appendTime }
    }

    /// Marks everything written so far as synced.
    mutating func markDurable() {
        durableSize = size
        durableNextOffset = nextOffset
        durableMaxTimestamp = maxTimestamp
        durableLastBatchPosition = lastBatchPosition
    }

    /// The position and base offset of the last indexed batch at or before `offset`
    /// (the start of the segment when none is).
    func startPosition(for offset: Int64) -> (position: Int64, offset: Int64) {
        var low = 0
        var high = offsetEntries.count
        while low < high {
            let middle = (low + high) / 2
            if baseOffset + Int64(offsetEntries[middle].relativeOffset) <= offset { low = middle + 1 } else { high = middle }
        }
        if low == 0 { return (0, baseOffset) }
        let entry = offsetEntries[low - 1]
        return (Int64(entry.position), baseOffset + Int64(entry.relativeOffset))
    }

    /// Where to start looking for the first batch with append time at or after `time`:
    /// the last indexed batch whose append time is before it.
    func startPosition(forTime time: Int64) -> (position: Int64, offset: Int64) {
        var low = 0
        var high = timeEntries.count
        while low < high {
            let middle = (low + high) / 2
            if timeEntries[middle].timestamp < time { low = middle + 1 } else { high = middle }
        }
        if low == 0 { return (0, baseOffset) }
        let entry = offsetEntries[low - 1]
        return (Int64(entry.position), baseOffset + Int64(entry.relativeOffset))
    }

    /// The coverage header for index files describing the synced part of the segment.
    var durableCoverage: IndexCoverage {
        IndexCoverage(
            baseOffset: baseOffset, coveredBytes: durableSize, nextOffset: durableNextOffset,
            maxTimestamp: durableMaxTimestamp, lastBatchPosition: durableLastBatchPosition)
    }

    /// Index files for the synced part (entries past it are left out).
    func encodedIndexes() -> (offsets: [UInt8], times: [UInt8]) {
        let count = offsetEntries.prefix { Int64($0.position) < durableSize }.count
        return (
            IndexFile.encode(offsetEntries: Array(offsetEntries.prefix(count)), coverage: durableCoverage),
            IndexFile.encode(timeEntries: Array(timeEntries.prefix(count)), coverage: durableCoverage))
    }
}
