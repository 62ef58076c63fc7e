import LogFormat
import LogIO
import Logging

/// What opening a partition found and did.
public struct RecoveryReport: Sendable, Equatable {
    public struct Truncation: Sendable, Equatable {
        /// The segment whose torn tail was cut.
        public var segmentBaseOffset: Int64
        /// Where the first invalid batch began; the segment now ends here.
        public var position: Int64
        /// Bytes dropped (none of them was acknowledged as durable).
        public var droppedBytes: Int64
        /// The first offset that was not recovered: the log's next offset after the cut.
        public var nextOffset: Int64
        /// Why the bytes at `position` are not a batch.
        public var reason: String
    }

    /// True when the previous run shut down cleanly.
    public var cleanShutdown: Bool
    public var segmentCount: Int
    /// Where in the last segment the re-read started (the recovery point), and how many bytes it read.
    public var recoveryStartPosition: Int64
    public var scannedBytes: Int64
    public var truncation: Truncation?
    /// Base offsets of segments whose index files were missing or wrong and were rebuilt.
    public var rebuiltIndexes: [Int64]
    /// Pre-written zeros after the last batch, trimmed (not a tear: nothing was written there).
    public var preallocatedBytesTrimmed: Int64 = 0
}

/// Opens a partition directory and decides what its files mean (design decision 6).
///
/// Facts it rests on: at most one group write is unsynced at any moment, and it is at
/// most `groupWriteBytesMax` bytes (the value recorded in `partition.state` for the run
/// that wrote it, or the configured one if larger); a segment is fully synced before the
/// next one is created; index files are derived and carry a checksum and the span of the
/// log they cover, written only for synced data, so the active segment's index coverage
/// is its recovery point.
///
/// Decision table (p: position of the first invalid batch; e: the end of written data,
/// the position after the last non-zero byte of the `.log` file, since the active segment
/// carries pre-written zeros ahead of its data):
///
/// | situation | what is found | decision |
/// |---|---|---|
/// | sealed segment (any but the last) | index files valid and covering the whole file | use them; nothing is re-read |
/// | sealed segment | index files missing, failing their CRC, or disagreeing with the file | rebuild them by reading the segment; any invalid batch is corruption (sealed data was synced) |
/// | any two adjacent segments | the second's base offset differs from the first's next offset | corruption: refuse |
/// | last segment, clean shutdown | index covers the file exactly and its last batch is valid | open at that end; nothing is re-read |
/// | last segment, clean shutdown | file longer than the index says (a clean shutdown trims pre-written space), last batch invalid, or index unusable and a re-read finds an invalid batch | corruption: refuse (after a clean shutdown nothing can be torn) |
/// | last segment, unclean stop | re-read from the recovery point (index coverage; the segment start when the index is unusable) reaches the file's end | open there; fsync the file so what was recovered is durable |
/// | last segment, unclean stop | only zeros from p on (e <= p) | pre-written space: trim the file at p; not a tear |
/// | last segment, unclean stop | invalid batch at p with e - p <= groupWriteBytesMax | torn tail: truncate at p, fsync, log segment, position, bytes and next offset (nothing from p on was acknowledged as durable) |
/// | last segment, unclean stop | invalid batch at p with e - p > groupWriteBytesMax | corruption: refuse, naming the file and p (truncating would drop acknowledged data) |
///
/// A bit that rots inside the last `groupWriteBytesMax` bytes of the last segment cannot be
/// told from a tear after an unclean stop; Docs/durability.md says so.
enum PartitionRecovery {
    struct Outcome {
        var segments: [SegmentState]
        var report: RecoveryReport
        /// The torn tail, if there is one.
        var truncation: RecoveryReport.Truncation?
        /// Where the last segment's file must end (a torn tail or pre-written zeros follow).
        var cut: Int64?
    }

    /// Reads the directory and decides; changes nothing on disk. `writable` opens the last
    /// segment for writing (for `open`); `check` opens everything read-only.
    static func analyze(
        directory: String, fileIO: any FileIO, configuration: StorageConfiguration, writable: Bool, logger: Logger
    ) throws(StorageError) -> Outcome {
        let bases = try segmentBaseOffsets(directory: directory, fileIO: fileIO)
        let stateFile = readStateFile(directory: directory, fileIO: fileIO, logger: logger)
        let clean = stateFile?.clean == true
        let window = Int64(max(configuration.groupWriteBytesMax, stateFile?.groupWriteBytesMax ?? Limits.groupWriteBytesMax))
        var report = RecoveryReport(cleanShutdown: clean, segmentCount: bases.count, recoveryStartPosition: 0, scannedBytes: 0, truncation: nil, rebuiltIndexes: [])
        var segments: [SegmentState] = []
        var truncation: RecoveryReport.Truncation?
        var cut: Int64?
        var previousTimestamp = Int64.min
        for (index, base) in bases.enumerated() {
            let isLast = index == bases.count - 1
            let handle = try openSegment(directory: directory, baseOffset: base, writable: writable && isLast, fileIO: fileIO)
            if let previous = segments.last, previous.nextOffset != base {
                throw StorageError(.corruption, "\(handle.logPath): segment starts at offset \(base) but the previous segment ends at offset \(previous.nextOffset)")
            }
            var segment: SegmentState
            if !isLast {
                (segment, _) = try loadSealed(handle, fileIO: fileIO, previousTimestamp: previousTimestamp, configuration: configuration, report: &report)
            } else if clean {
                segment = try loadCleanLast(handle, fileIO: fileIO, stateFile: stateFile!, previousTimestamp: previousTimestamp, configuration: configuration, report: &report)
            } else {
                (segment, truncation, cut) = try loadUncleanLast(handle, fileIO: fileIO, window: window, previousTimestamp: previousTimestamp, configuration: configuration, report: &report)
            }
            if isLast { segment.firstTimestamp = try firstTimestamp(of: segment) }
            previousTimestamp = max(previousTimestamp, segment.maxTimestamp)
            segments.append(segment)
        }
        if clean, let stateFile, let last = segments.last,
           stateFile.lastSegmentBaseOffset != last.baseOffset || stateFile.nextOffset != last.nextOffset || stateFile.endPosition != last.size {
            throw StorageError(.corruption, "\(last.handle.logPath): the clean-shutdown record says the log ends at offset \(stateFile.nextOffset), position \(stateFile.endPosition) of segment \(stateFile.lastSegmentBaseOffset), but the files end at offset \(last.nextOffset), position \(last.size)")
        }
        report.truncation = truncation
        return Outcome(segments: segments, report: report, truncation: truncation, cut: cut)
    }

    // MARK: Segments

    private static func segmentBaseOffsets(directory: String, fileIO: any FileIO) throws(StorageError) -> [Int64] {
        let names: [String]
        do { names = try fileIO.list(directory) } catch { throw StorageError.io(error, "listing partition directory") }
        let bases = names.compactMap { name -> Int64? in
            guard let parsed = SegmentFileName.parse(name), parsed.kind == .log else { return nil }
            return parsed.baseOffset
        }.sorted()
        if bases.count > Limits.partitionSegmentCountMax {
            throw StorageError(.limitReached, "\(directory): \(bases.count) segments exceed the limit of \(Limits.partitionSegmentCountMax)")
        }
        return bases
    }

    static func readStateFile(directory: String, fileIO: any FileIO, logger: Logger) -> PartitionStateFile? {
        let path = joinPath(directory, PartitionStateFile.name)
        guard fileIO.exists(path) else { return nil }
        do {
            return try PartitionStateFile.decode(try fileIO.readWholeFile(path, bytesMax: 4096))
        } catch {
            logger.warning("partition state file is unreadable; recovering as after an unclean stop", metadata: ["path": "\(path)", "error": "\(error)"])
            return nil
        }
    }

    private static func openSegment(directory: String, baseOffset: Int64, writable: Bool, fileIO: any FileIO) throws(StorageError) -> SegmentHandle {
        let path = joinPath(directory, SegmentFileName.name(baseOffset: baseOffset, kind: .log))
        do {
            let file = try fileIO.open(path, mode: writable ? .readWrite : .readOnly)
            return SegmentHandle(directory: directory, baseOffset: baseOffset, file: file)
        } catch {
            throw StorageError.io(error, "opening segment")
        }
    }

    private static func fileSize(_ handle: SegmentHandle) throws(StorageError) -> Int64 {
        let size: Int64
        do { size = try handle.file.size() } catch { throw StorageError.io(error, "reading segment size") }
        if size > Int64(Limits.segmentBytesMax) {
            throw StorageError(.corruption, "\(handle.logPath): \(size) bytes exceed the segment size limit of \(Limits.segmentBytesMax)")
        }
        return size
    }

    /// A sealed segment: its index files when they are valid and cover it whole, else a
    /// rebuild by reading it, in which any invalid batch is corruption.
    private static func loadSealed(
        _ handle: SegmentHandle, fileIO: any FileIO, previousTimestamp: Int64, configuration: StorageConfiguration, report: inout RecoveryReport
    ) throws(StorageError) -> (SegmentState, Bool) {
        let size = try fileSize(handle)
        if var segment = loadIndexes(handle, fileIO: fileIO), segment.size == size, size > 0 {
            segment.isSealed = true
            return (segment, false)
        }
        var segment = SegmentState(handle: handle)
        let scan = try scan(&segment, from: 0, to: size, previousTimestamp: previousTimestamp, configuration: configuration)
        if let invalid = scan.invalid {
            throw StorageError(.corruption, "\(handle.logPath): invalid batch at byte \(invalid.position): \(invalid.reason) (in a sealed segment, whose data was synced)")
        }
        if size == 0 {
            throw StorageError(.corruption, "\(handle.logPath): a sealed segment is empty")
        }
        segment.isSealed = true
        report.rebuiltIndexes.append(handle.baseOffset)
        return (segment, true)
    }

    /// The last segment after a clean shutdown: the index must cover the file exactly and
    /// its last batch must be valid; when the index is unusable, a full re-read in which any
    /// invalid batch is corruption.
    private static func loadCleanLast(
        _ handle: SegmentHandle, fileIO: any FileIO, stateFile: PartitionStateFile, previousTimestamp: Int64,
        configuration: StorageConfiguration, report: inout RecoveryReport
    ) throws(StorageError) -> SegmentState {
        let size = try fileSize(handle)
        if let segment = loadIndexes(handle, fileIO: fileIO) {
            if segment.size != size {
                throw StorageError(.corruption, "\(handle.logPath): after a clean shutdown the log should end at byte \(segment.size), but the file holds \(size) bytes")
            }
            if segment.lastBatchPosition >= 0 {
                var scanner = BatchScanner(file: handle.file, from: segment.lastBatchPosition, offset: nil, endPosition: size, chunkBytes: 64 << 10)
                let step: BatchScanner.Step
                do { step = try scanner.next() } catch { throw StorageError.io(error, "reading the last batch") }
                guard case .batch(let batch) = step, batch.end == size, batch.header.nextOffset == segment.nextOffset else {
                    let reason: String
                    if case .invalid(_, let why) = step { reason = why } else { reason = "it does not end the log" }
                    throw StorageError(.corruption, "\(handle.logPath): invalid batch at byte \(segment.lastBatchPosition): \(reason) (the last batch, after a clean shutdown)")
                }
            }
            return segment
        }
        var segment = SegmentState(handle: handle)
        let scan = try scan(&segment, from: 0, to: size, previousTimestamp: previousTimestamp, configuration: configuration)
        if let invalid = scan.invalid {
            throw StorageError(.corruption, "\(handle.logPath): invalid batch at byte \(invalid.position): \(invalid.reason) (after a clean shutdown nothing can be torn)")
        }
        report.rebuiltIndexes.append(handle.baseOffset)
        report.scannedBytes = size
        return segment
    }

    /// The last segment after an unclean stop: re-read from the recovery point to the end;
    /// past the last valid batch, zeros are pre-written space, non-zero bytes within the
    /// window a torn tail, non-zero bytes reaching further back corruption.
    private static func loadUncleanLast(
        _ handle: SegmentHandle, fileIO: any FileIO, window: Int64, previousTimestamp: Int64,
        configuration: StorageConfiguration, report: inout RecoveryReport
    ) throws(StorageError) -> (SegmentState, RecoveryReport.Truncation?, cut: Int64?) {
        let size = try fileSize(handle)
        var segment: SegmentState
        var start = previousTimestamp
        if let loaded = loadIndexes(handle, fileIO: fileIO), loaded.size <= size {
            segment = loaded
            start = loaded.maxTimestamp >= 0 ? loaded.maxTimestamp : previousTimestamp
        } else {
            segment = SegmentState(handle: handle)
            if size > 0 { report.rebuiltIndexes.append(handle.baseOffset) }
        }
        report.recoveryStartPosition = segment.size
        let scan = try scan(&segment, from: segment.size, to: size, previousTimestamp: start, configuration: configuration)
        report.scannedBytes = size - report.recoveryStartPosition
        let verdict: TailVerdict
        do {
            verdict = try TailVerdict.classify(file: handle.file, invalidPosition: scan.invalid?.position, fileSize: size, window: window)
        } catch {
            throw StorageError.io(error, "reading the end of the last segment")
        }
        switch verdict {
        case .none:
            return (segment, nil, nil)
        case .zeros(let position):
            report.preallocatedBytesTrimmed = size - position
            return (segment, nil, position)
        case .torn(let position, let writtenEnd):
            let truncation = RecoveryReport.Truncation(
                segmentBaseOffset: handle.baseOffset, position: position, droppedBytes: size - position,
                nextOffset: segment.nextOffset, reason: "\(scan.invalid!.reason); \(writtenEnd - position) bytes were written after it")
            return (segment, truncation, position)
        case .corruption(let position, let writtenEnd):
            throw StorageError(.corruption, "\(handle.logPath): invalid batch at byte \(position): \(scan.invalid!.reason) (data was written up to byte \(writtenEnd), \(writtenEnd - position) bytes after it, more than one group write of at most \(window) bytes, so it was synced)")
        }
    }

    /// Reads batches from `from` to `to`, adding each to the segment's state.
    @discardableResult
    static func scan(
        _ segment: inout SegmentState, from: Int64, to: Int64, previousTimestamp: Int64, configuration: StorageConfiguration
    ) throws(StorageError) -> (invalid: (position: Int64, reason: String)?, Void) {
        var scanner = BatchScanner(file: segment.handle.file, from: from, offset: segment.nextOffset, endPosition: to, previousTimestamp: previousTimestamp)
        while true {
            let step: BatchScanner.Step
            do { step = try scanner.next() } catch { throw StorageError.io(error, "reading segment") }
            switch step {
            case .end:
                segment.markDurable()
                return (nil, ())
            case .invalid(let position, let reason):
                segment.markDurable()
                return ((position, reason), ())
            case .batch(let batch):
                segment.recordWritten(
                    position: batch.position, size: batch.size, baseOffset: batch.header.baseOffset,
                    nextOffset: batch.header.nextOffset, appendTime: batch.header.maxTimestamp,
                    indexIntervalBytes: configuration.indexIntervalBytes)
            }
        }
    }

    /// The active segment's first append time, for roll by age (sealed segments need none).
    private static func firstTimestamp(of segment: SegmentState) throws(StorageError) -> Int64? {
        if segment.size == 0 { return nil }
        if let known = segment.firstTimestamp { return known }
        var scanner = BatchScanner(file: segment.handle.file, from: 0, offset: segment.baseOffset, endPosition: segment.size, chunkBytes: 64 << 10)
        let step: BatchScanner.Step
        do { step = try scanner.next() } catch { throw StorageError.io(error, "reading the first batch") }
        switch step {
        case .batch(let batch):
            return batch.header.maxTimestamp
        case .invalid(let position, let reason):
            throw StorageError(.corruption, "\(segment.handle.logPath): invalid batch at byte \(position): \(reason) (the first batch of the active segment)")
        case .end:
            return nil
        }
    }

    // MARK: Index files

    /// The segment's state from its index files, or nil when they are missing, fail their
    /// checksum, or disagree with each other or with themselves.
    static func loadIndexes(_ handle: SegmentHandle, fileIO: any FileIO) -> SegmentState? {
        guard fileIO.exists(handle.indexPath), fileIO.exists(handle.timeIndexPath),
              let offsetBytes = try? fileIO.readWholeFile(handle.indexPath, bytesMax: Limits.segmentBytesMax),
              let timeBytes = try? fileIO.readWholeFile(handle.timeIndexPath, bytesMax: Limits.segmentBytesMax),
              let offsets = try? IndexFile.decodeOffsetIndex(offsetBytes),
              let times = try? IndexFile.decodeTimeIndex(timeBytes)
        else { return nil }
        let coverage = offsets.coverage
        guard times.coverage == coverage, coverage.baseOffset == handle.baseOffset,
              offsets.entries.count == times.entries.count,
              consistent(coverage: coverage, offsets: offsets.entries, times: times.entries)
        else { return nil }
        var segment = SegmentState(handle: handle)
        segment.offsetEntries = offsets.entries
        segment.timeEntries = times.entries
        segment.size = coverage.coveredBytes
        segment.nextOffset = coverage.nextOffset
        segment.maxTimestamp = coverage.maxTimestamp
        segment.lastBatchPosition = coverage.lastBatchPosition
        segment.bytesSinceIndexEntry = Int(coverage.coveredBytes - Int64(offsets.entries.last?.position ?? 0))
        segment.markDurable()
        return segment
    }

    private static func consistent(coverage: IndexCoverage, offsets: [OffsetIndexEntry], times: [TimeIndexEntry]) -> Bool {
        let empty = coverage.coveredBytes == 0
        if empty != (coverage.nextOffset == coverage.baseOffset) || empty != (coverage.lastBatchPosition < 0) { return false }
        if !empty && (coverage.lastBatchPosition + Int64(RecordBatchHeader.size) > coverage.coveredBytes || coverage.nextOffset <= coverage.baseOffset) { return false }
        var previous: (relative: Int64, position: Int64, time: Int64) = (0, 0, Int64.min)
        for (offsetEntry, timeEntry) in zip(offsets, times) {
            let relative = Int64(offsetEntry.relativeOffset)
            let position = Int64(offsetEntry.position)
            guard timeEntry.relativeOffset == offsetEntry.relativeOffset,
                  relative > previous.relative, position > previous.position,
                  position <= coverage.lastBatchPosition, coverage.baseOffset + relative < coverage.nextOffset,
                  timeEntry.timestamp >= previous.time, timeEntry.timestamp <= coverage.maxTimestamp
            else { return false }
            previous = (relative, position, timeEntry.timestamp)
        }
        return true
    }
}
