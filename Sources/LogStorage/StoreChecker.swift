import LogFormat
import LogIO
import Logging

/// `lodestone check`: reads every batch of every segment of a closed data directory and
/// checks its CRC, its place in the offset sequence and its stamp (as `BatchScanner`
/// does), the continuity of segments, and that index files agree with the log. It takes
/// the directory's lock (so it never reads a store a server has open) and changes nothing.
///
/// Findings are faults or notes. Faults: corruption (an invalid batch where nothing can be
/// torn), broken offset continuity, unreadable configuration, index files that disagree
/// with the log. Notes: a torn tail that the next open will truncate (after an unclean
/// stop, non-zero bytes within the recorded group-write window after the last valid batch),
/// pre-written zeros after the last batch, index files that are only missing or behind
/// (the active segment's recovery point after an unclean stop).
public enum StoreChecker {
    public struct Finding: Sendable, Equatable, CustomStringConvertible {
        public var isFault: Bool
        public var path: String
        /// Byte position in the file, when the finding is about one.
        public var position: Int64?
        public var message: String

        public var description: String {
            let place = position.map { "\(path) byte \($0)" } ?? path
            return "\(isFault ? "FAULT" : "note"): \(place): \(message)"
        }
    }

    public struct PartitionSummary: Sendable, Equatable {
        public var topic: String
        public var partition: Int
        public var segmentCount = 0
        public var batchCount = 0
        public var recordCount: Int64 = 0
        public var bytes: Int64 = 0
        public var startOffset: Int64 = 0
        /// The offset after the last valid batch.
        public var nextOffset: Int64 = 0
        public var cleanShutdown = false
    }

    public struct Report: Sendable, Equatable {
        public var topics: [TopicConfiguration] = []
        public var partitions: [PartitionSummary] = []
        public var findings: [Finding] = []
        public var faultCount: Int { findings.filter(\.isFault).count }
    }

    /// Checks the data directory; throws only when it cannot be checked at all (missing,
    /// or locked by a running server).
    public static func check(directory: String, fileIO: any FileIO) throws(StorageError) -> Report {
        guard fileIO.exists(directory) else { throw StorageError(.notFound, "\(directory) does not exist") }
        let lock = try LogStore.lockDirectory(directory, fileIO: fileIO)
        defer { lock.release() }
        var report = Report()
        checkRegistry(directory: directory, fileIO: fileIO, findings: &report.findings)
        let topicsDirectory = joinPath(directory, "topics")
        for name in try LogStore.topicDirectoryNames(topicsDirectory, fileIO: fileIO) {
            let topicDirectory = joinPath(topicsDirectory, name)
            let configuration: TopicConfiguration
            do {
                configuration = try LogStore.readTopicConfiguration(topicDirectory, fileIO: fileIO)
            } catch {
                report.findings.append(Finding(isFault: true, path: topicDirectory, message: error.message))
                continue
            }
            report.topics.append(configuration)
            for index in 0..<configuration.partitionCount {
                let partitionDirectory = joinPath(topicDirectory, String(index))
                var summary = PartitionSummary(topic: configuration.name, partition: index)
                checkPartition(partitionDirectory, fileIO: fileIO, isFlip: configuration.kind == .flip, summary: &summary, findings: &report.findings)
                report.partitions.append(summary)
            }
        }
        return report
    }

    /// The producer registry: source of truth, so damage is a fault; a torn last slot (an
    /// init that crashed before its fsync returned) is a note.
    static func checkRegistry(directory: String, fileIO: any FileIO, findings: inout [Finding]) {
        let path = joinPath(directory, ProducerRegistry.fileName)
        guard fileIO.exists(path) else { return }
        do {
            let bytes = try fileIO.readWholeFile(path, bytesMax: Limits.producerNamesMax * ProducerRegistry.slotBytes * 4)
            if let torn = try ProducerRegistry.verify(bytes, path: path) {
                findings.append(Finding(isFault: false, path: path, position: Int64(torn), message: "a torn last record of \(bytes.count - torn) bytes (an init that was never answered); the next open cuts it"))
            }
        } catch let error as StorageError {
            findings.append(Finding(isFault: true, path: path, message: error.message))
        } catch {
            findings.append(Finding(isFault: true, path: path, message: "\(error)"))
        }
    }

    /// Replay-protection snapshots are derived: an unreadable one is a note (the next open
    /// rebuilds the state from the log).
    static func checkSnapshots(directory: String, names: [String], fileIO: any FileIO, findings: inout [Finding]) {
        for name in names where ReplaySnapshot.offset(ofFileName: name) != nil {
            let path = joinPath(directory, name)
            var state = ReplayState(producerExpirationMilliseconds: 1)
            do {
                _ = try ReplaySnapshot.decode(try fileIO.readWholeFile(path, bytesMax: Limits.snapshotBytesMax), into: &state, name: path)
            } catch {
                findings.append(Finding(isFault: false, path: path, message: "replay-protection snapshot is unreadable (\(error)); the next open rebuilds the state from the log"))
            }
        }
    }

    /// Checks one partition directory (no lock taken: the caller holds it or owns the disk).
    public static func checkPartition(directory: String, topic: String, partition: Int, fileIO: any FileIO) -> (PartitionSummary, [Finding]) {
        var summary = PartitionSummary(topic: topic, partition: partition)
        var findings: [Finding] = []
        checkPartition(directory, fileIO: fileIO, summary: &summary, findings: &findings)
        return (summary, findings)
    }

    static func checkPartition(_ directory: String, fileIO: any FileIO, isFlip: Bool = false, summary: inout PartitionSummary, findings: inout [Finding]) {
        guard fileIO.exists(directory) else {
            findings.append(Finding(isFault: true, path: directory, message: "the partition directory is missing"))
            return
        }
        let names = (try? fileIO.list(directory)) ?? []
        checkSnapshots(directory: directory, names: names, fileIO: fileIO, findings: &findings)
        let bases = names.compactMap { SegmentFileName.parse($0).flatMap { $0.kind == .log ? $0.baseOffset : nil } }.sorted()
        var silent = Logger(label: "lodestone.check")
        silent.logLevel = .critical
        let state = PartitionRecovery.readStateFile(directory: directory, fileIO: fileIO, logger: silent)
        if state == nil && !bases.isEmpty {
            findings.append(Finding(isFault: false, path: joinPath(directory, PartitionStateFile.name), message: "missing or unreadable; the next open recovers as after an unclean stop"))
        }
        summary.cleanShutdown = state?.clean == true
        summary.segmentCount = bases.count
        summary.startOffset = bases.first ?? 0
        let window = Int64(state?.groupWriteBytesMax ?? Limits.groupWriteBytesMax)
        var expectedOffset: Int64? = bases.first
        var previousTimestamp = Int64.min
        for (index, base) in bases.enumerated() {
            let path = joinPath(directory, SegmentFileName.name(baseOffset: base, kind: .log))
            if let expected = expectedOffset, expected != base {
                findings.append(Finding(isFault: true, path: path, message: "segment starts at offset \(base) but the previous segment ends at offset \(expected)"))
            }
            let isLast = index == bases.count - 1
            let scan = checkSegment(path: path, directory: directory, baseOffset: base, isLast: isLast, isFlip: isFlip, state: state, window: window,
                                    previousTimestamp: previousTimestamp, fileIO: fileIO, summary: &summary, findings: &findings)
            // After corruption the segment's true end is unknown: judge the next from its own start.
            expectedOffset = scan.complete ? scan.nextOffset : nil
            previousTimestamp = scan.complete ? scan.lastTimestamp : Int64.min
            summary.nextOffset = scan.nextOffset
        }
    }

    /// Scans one segment; returns where it ends.
    static func checkSegment(
        path: String, directory: String, baseOffset: Int64, isLast: Bool, isFlip: Bool = false, state: PartitionStateFile?, window: Int64,
        previousTimestamp: Int64, fileIO: any FileIO, summary: inout PartitionSummary, findings: inout [Finding]
    ) -> (nextOffset: Int64, lastTimestamp: Int64, complete: Bool) {
        let file: any StorageFile
        let size: Int64
        do {
            file = try fileIO.open(path, mode: .readOnly)
            size = try file.size()
        } catch {
            findings.append(Finding(isFault: true, path: path, message: "\(error)"))
            return (baseOffset, previousTimestamp, false)
        }
        defer { try? file.close() }
        var segment = SegmentState(handle: SegmentHandle(directory: directory, baseOffset: baseOffset, file: file))
        var batchStarts: [Int64: (offset: Int64, time: Int64)] = [:]
        var scanner = BatchScanner(file: file, from: 0, offset: baseOffset, endPosition: size, previousTimestamp: previousTimestamp)
        var readWhole = true
        var contents = SummaryContents()
        scan: while true {
            let step: BatchScanner.Step
            do { step = try scanner.next() } catch {
                findings.append(Finding(isFault: true, path: path, message: "\(error)"))
                break
            }
            switch step {
            case .end:
                break scan
            case .invalid(let position, let reason):
                let verdict = isLast && state?.clean != true
                    ? ((try? TailVerdict.classify(file: file, invalidPosition: position, fileSize: size, window: window)) ?? .corruption(at: position, writtenEnd: size))
                    : .corruption(at: position, writtenEnd: size)
                switch verdict {
                case .none:
                    break
                case .zeros(let from):
                    findings.append(Finding(isFault: false, path: path, position: from, message: "\(size - from) bytes of pre-written zeros after the last batch; the next open trims them"))
                case .torn(let from, let writtenEnd):
                    findings.append(Finding(isFault: false, path: path, position: from, message: "torn tail of \(size - from) bytes (\(reason); written up to byte \(writtenEnd)); the next open truncates it, nothing there was acknowledged as durable"))
                case .corruption(let at, let writtenEnd):
                    let context = isLast && state?.clean != true ? " (data was written up to byte \(writtenEnd), beyond one group write)" : ""
                    findings.append(Finding(isFault: true, path: path, position: at, message: "invalid batch: \(reason)\(context)"))
                    readWhole = false
                }
                break scan
            case .batch(let batch):
                if isFlip && !isLast { contents.add(scanner, batch) }
                batchStarts[batch.position] = (batch.header.baseOffset, batch.header.maxTimestamp)
                summary.batchCount += 1
                summary.recordCount += Int64(batch.header.recordCount)
                summary.bytes += Int64(batch.size)
                segment.recordWritten(position: batch.position, size: batch.size, baseOffset: batch.header.baseOffset,
                                      nextOffset: batch.header.nextOffset, appendTime: batch.header.maxTimestamp, indexIntervalBytes: Int.max)
            }
        }
        segment.markDurable()
        // Past corruption the log's batches are unknown, so the indexes cannot be judged.
        if readWhole { checkIndexes(segment: segment, batchStarts: batchStarts, isLast: isLast, clean: state?.clean == true, fileIO: fileIO, findings: &findings) }
        if readWhole && isFlip && !isLast { contents.check(directory: directory, baseOffset: baseOffset, fileIO: fileIO, findings: &findings) }
        return (segment.nextOffset, max(previousTimestamp, segment.maxTimestamp), readWhole)
    }

    /// Index files must agree with the batches the scan found: every entry at a batch
    /// start with that batch's offset and time, the coverage at a batch boundary with the
    /// offsets and time found there.
    static func checkIndexes(
        segment: SegmentState, batchStarts: [Int64: (offset: Int64, time: Int64)], isLast: Bool, clean: Bool,
        fileIO: any FileIO, findings: inout [Finding]
    ) {
        let handle = segment.handle
        let sealedOrClean = !isLast || clean
        guard let loaded = PartitionRecovery.loadIndexes(handle, fileIO: fileIO) else {
            let message = "index files are missing or fail their checksum; the next open rebuilds them"
            findings.append(Finding(isFault: sealedOrClean && segment.size > 0, path: handle.indexPath, message: message))
            return
        }
        var problems: [String] = []
        if sealedOrClean && loaded.size != segment.size {
            problems.append("they cover \(loaded.size) bytes of a \(segment.size)-byte segment")
        }
        if loaded.size > segment.size {
            problems.append("they cover \(loaded.size) bytes, past the last valid batch at \(segment.size)")
        } else if loaded.size > 0 {
            if let last = batchStarts[loaded.lastBatchPosition] {
                if last.time != loaded.maxTimestamp { problems.append("their max timestamp \(loaded.maxTimestamp) differs from the log's \(last.time)") }
            } else {
                problems.append("their last batch position \(loaded.lastBatchPosition) is not a batch boundary")
            }
            let nextAtCoverage = batchStarts[loaded.size]?.offset ?? (loaded.size == segment.size ? segment.nextOffset : nil)
            if nextAtCoverage != loaded.nextOffset {
                problems.append("they say offset \(loaded.nextOffset) follows byte \(loaded.size), the log says \(nextAtCoverage.map(String.init) ?? "no batch starts there")")
            }
        }
        for (entry, time) in zip(loaded.offsetEntries, loaded.timeEntries) {
            guard let batch = batchStarts[Int64(entry.position)] else {
                problems.append("an entry points at byte \(entry.position), which is not a batch boundary")
                break
            }
            if batch.offset != handle.baseOffset + Int64(entry.relativeOffset) || batch.time != time.timestamp {
                problems.append("the entry at byte \(entry.position) says offset \(handle.baseOffset + Int64(entry.relativeOffset)), time \(time.timestamp); the batch there has \(batch.offset), \(batch.time)")
                break
            }
        }
        if !problems.isEmpty {
            findings.append(Finding(isFault: true, path: handle.indexPath, message: "index files disagree with the log: " + problems.joined(separator: "; ") + "; the next open rebuilds them"))
        }
    }
}

/// What a sealed flip segment holds, collected while `check` scans it, to hold its summary
/// file against: replays skip segments by the summary, so one that disagrees with the log
/// would make them skip events.
struct SummaryContents {
    var resources = Set<String>()
    var eventCount: Int64 = 0
    var eventTimeMin = Int64.max
    var eventTimeMax = Int64.min
    var unreadable = false

    mutating func add(_ scanner: BatchScanner, _ batch: BatchScanner.Batch) {
        do {
            try scanner.withBatchBytes(batch) { bytes in
                try FlipRecords.forEach(batch: bytes, header: batch.header) { event in
                    resources.insert(String(decoding: event.resource, as: UTF8.self))
                    eventCount += 1
                    eventTimeMin = min(eventTimeMin, event.time)
                    eventTimeMax = max(eventTimeMax, event.time)
                }
            }
        } catch {
            unreadable = true
        }
    }

    func check(directory: String, baseOffset: Int64, fileIO: any FileIO, findings: inout [StoreChecker.Finding]) {
        let path = SegmentSummary.path(directory: directory, baseOffset: baseOffset)
        guard fileIO.exists(path), !unreadable else { return }
        let summary: SegmentSummary
        do {
            summary = try SegmentSummary.decode(try fileIO.readWholeFile(path, bytesMax: SegmentSummary.fileBytesMax))
        } catch {
            findings.append(StoreChecker.Finding(isFault: false, path: path, message: "segment summary is unreadable (\(error)); replays read the segment in full"))
            return
        }
        var problems: [String] = []
        if summary.eventCount != eventCount { problems.append("it counts \(summary.eventCount) events, the segment holds \(eventCount)") }
        if eventCount > 0 && (summary.eventTimeMin != eventTimeMin || summary.eventTimeMax != eventTimeMax) {
            problems.append("its event times \(summary.eventTimeMin) to \(summary.eventTimeMax) are not the segment's \(eventTimeMin) to \(eventTimeMax)")
        }
        if summary.resourceCount != resources.count { problems.append("it names \(summary.resourceCount) resources, the segment holds \(resources.count)") }
        if let missing = resources.sorted().first(where: { !summary.mayContain(resource: $0) }) { problems.append("it leaves out \(missing)") }
        if let listed = summary.resources, let extra = listed.first(where: { !resources.contains($0) }) { problems.append("it names \(extra), which the segment does not hold") }
        if !problems.isEmpty {
            findings.append(StoreChecker.Finding(isFault: true, path: path, message: "segment summary disagrees with the log: " + problems.joined(separator: "; ") + "; delete it (replays then read the segment in full)"))
        }
    }
}
