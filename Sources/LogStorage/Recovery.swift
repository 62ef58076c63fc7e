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

/// Opens a partition directory and acts on what `RecoveryPlan` decides its files mean
/// (design decision 6; the facts and the decision table are in RecoveryPlan.swift);
/// `lodestone check` and `DirectoryReader` act on the same plan.
enum PartitionRecovery {
    struct Outcome {
        var segments: [SegmentState]
        var report: RecoveryReport
        /// The torn tail, if there is one.
        var truncation: RecoveryReport.Truncation?
        /// Where the last segment's file must end (a torn tail or pre-written zeros follow).
        var cut: Int64?
    }

    /// Reads the directory and applies the plan; changes nothing on disk. `writable` opens
    /// the last segment for writing.
    static func analyze(
        directory: String, fileIO: any FileIO, configuration: StorageConfiguration, writable: Bool, logger: Logger
    ) throws(StorageError) -> Outcome {
        let bases = try segmentBaseOffsets(directory: directory, fileIO: fileIO)
        let stateFile = readStateFile(directory: directory, fileIO: fileIO, logger: logger)
        var report = RecoveryReport(cleanShutdown: stateFile?.clean == true, segmentCount: bases.count, recoveryStartPosition: 0, scannedBytes: 0, truncation: nil, rebuiltIndexes: [])
        var segments: [SegmentState] = []
        var truncation: RecoveryReport.Truncation?
        var cut: Int64?
        var previousTimestamp = Int64.min
        for (index, base) in bases.enumerated() {
            let role = RecoveryPlan.role(index: index, count: bases.count, stateFile: stateFile)
            let handle = try openSegment(directory: directory, baseOffset: base, writable: writable && role != .sealed, fileIO: fileIO)
            if let gap = RecoveryPlan.continuity(previousNextOffset: segments.last?.nextOffset, baseOffset: base) {
                throw StorageError.corruption(handle.logPath, gap)
            }
            var (segment, size, end, invalidReason) = try loadSegment(handle, role: role, fileIO: fileIO, previousTimestamp: previousTimestamp, configuration: configuration, report: &report)
            switch end {
            case .intact:
                break
            case .preWrittenZeros(let from):
                report.preallocatedBytesTrimmed = size - from
                cut = from
            case .tornTail(let from, let writtenEnd):
                truncation = RecoveryReport.Truncation(
                    segmentBaseOffset: base, position: from, droppedBytes: size - from,
                    nextOffset: segment.nextOffset, reason: "\(invalidReason ?? "an invalid batch"); \(writtenEnd - from) bytes were written after it")
                cut = from
            case .corruption:
                preconditionFailure("loadSegment throws on corruption")
            }
            if role != .sealed { segment.firstTimestamp = try firstTimestamp(of: segment) }
            previousTimestamp = max(previousTimestamp, segment.maxTimestamp)
            segments.append(segment)
        }
        if let last = segments.last,
           let mismatch = RecoveryPlan.cleanEnd(stateFile: stateFile, lastBaseOffset: last.baseOffset, nextOffset: last.nextOffset, size: last.size) {
            throw StorageError.corruption(last.handle.logPath, mismatch)
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
            throw StorageError.corruption(handle.logPath, "\(size) bytes exceed the segment size limit of \(Limits.segmentBytesMax)")
        }
        return size
    }

    /// One segment, as the plan says for its role: its index files when they cover it,
    /// else a re-read (from the recovery point, or from the start to rebuild them); what
    /// follows its last valid batch is judged by the plan, and corruption is thrown.
    private static func loadSegment(
        _ handle: SegmentHandle, role: RecoveryPlan.Role, fileIO: any FileIO, previousTimestamp: Int64,
        configuration: StorageConfiguration, report: inout RecoveryReport
    ) throws(StorageError) -> (SegmentState, size: Int64, RecoveryPlan.End, invalidReason: String?) {
        let size = try fileSize(handle)
        let indexed = loadIndexes(handle, fileIO: fileIO)
        var segment: SegmentState
        var end = RecoveryPlan.End.intact
        var invalidReason: String?
        switch RecoveryPlan.start(role: role, fileSize: size, indexCoverage: indexed?.size) {
        case .corruption(let why):
            throw StorageError.corruption(handle.logPath, why)
        case .useIndexes(let verifyLastBatch):
            segment = indexed!
            if verifyLastBatch { try verifyLastBatchEnds(segment, size: size) }
        case .read(let from, let rebuildIndexes):
            segment = (rebuildIndexes ? nil : indexed) ?? SegmentState(handle: handle)
            if rebuildIndexes { report.rebuiltIndexes.append(handle.baseOffset) }
            if role != .sealed {
                report.recoveryStartPosition = from
                report.scannedBytes = size - from
            }
            let start = segment.maxTimestamp >= 0 ? segment.maxTimestamp : previousTimestamp
            let scan = try scan(&segment, from: from, to: size, previousTimestamp: start, configuration: configuration)
            invalidReason = scan.invalid?.reason
            do {
                end = try judgeEnd(role: role, file: handle.file, invalid: scan.invalid, fileSize: size)
            } catch {
                throw StorageError.io(error, "reading the end of \(handle.logPath)")
            }
            if case .corruption(let at, let because) = end {
                throw StorageError.corruption(handle.logPath, position: at, "invalid batch at byte \(at): \(scan.invalid!.reason) (\(because))")
            }
            // Read from the recovery point, the scan saw the segment's first batch only
            // when it started at 0; `firstTimestamp(of:)` reads it otherwise.
            if from > 0 { segment.firstTimestamp = nil }
        }
        if role == .sealed { segment.isSealed = true }
        return (segment, size, end, invalidReason)
    }

    /// The plan's verdict on what follows the last valid batch, reading where written data
    /// ends only when the role needs it: the one read the plan asks of every caller.
    static func judgeEnd(
        role: RecoveryPlan.Role, file: any StorageFile, invalid: (position: Int64, reason: String)?, fileSize: Int64
    ) throws(IOError) -> RecoveryPlan.End {
        var writtenEnd: Int64?
        if let invalid, role.mayHaveTornTail { writtenEnd = try endOfWrittenData(file, from: invalid.position, to: fileSize) }
        return RecoveryPlan.end(role: role, invalidAt: invalid?.position, writtenEnd: writtenEnd)
    }

    /// After a clean shutdown the index names the last batch: it must be valid and end the file.
    private static func verifyLastBatchEnds(_ segment: SegmentState, size: Int64) throws(StorageError) {
        guard segment.lastBatchPosition >= 0 else { return }
        var scanner = BatchScanner(file: segment.handle.file, from: segment.lastBatchPosition, offset: nil, endPosition: size, chunkBytes: 64 << 10)
        let step: BatchScanner.Step
        do { step = try scanner.next() } catch { throw StorageError.io(error, "reading the last batch") }
        guard case .batch(let batch) = step, batch.end == size, batch.header.nextOffset == segment.nextOffset else {
            let reason: String
            if case .invalid(_, let why) = step { reason = why } else { reason = "it does not end the log" }
            throw StorageError.corruption(segment.handle.logPath, position: segment.lastBatchPosition, "invalid batch at byte \(segment.lastBatchPosition): \(reason) (the last batch, after a clean shutdown)")
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
            throw StorageError.corruption(segment.handle.logPath, position: position, "invalid batch at byte \(position): \(reason) (the first batch of the active segment)")
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
