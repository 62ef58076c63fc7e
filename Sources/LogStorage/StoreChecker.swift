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
        /// The recovery plan refuses the partition for this, so the next open will (both act
        /// on `RecoveryPlan`). Other corruption lies in data open trusts by its index files:
        /// reads meet it, and open too when it lies where replay protection is rebuilt from
        /// (the log after the newest snapshot).
        public var refusesOpen = false

        public var description: String {
            let place = position.map { "\(path) byte \($0)" } ?? path
            return "\(isFault ? "FAULT" : "note"): \(place): \(message)\(refusesOpen ? "; the next open refuses the partition" : "")"
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
        var expectedOffset: Int64? = bases.first
        var previousTimestamp = Int64.min
        for (index, base) in bases.enumerated() {
            let path = joinPath(directory, SegmentFileName.name(baseOffset: base, kind: .log))
            if let gap = RecoveryPlan.continuity(previousNextOffset: expectedOffset, baseOffset: base) {
                findings.append(Finding(isFault: true, path: path, message: gap, refusesOpen: true))
            }
            let role = RecoveryPlan.role(index: index, count: bases.count, stateFile: state)
            let scan = checkSegment(path: path, directory: directory, baseOffset: base, role: role, isFlip: isFlip,
                                    previousTimestamp: previousTimestamp, fileIO: fileIO, summary: &summary, findings: &findings)
            // After corruption the segment's true end is unknown: judge the next from its own start.
            expectedOffset = scan.complete ? scan.nextOffset : nil
            previousTimestamp = scan.complete ? scan.lastTimestamp : Int64.min
            summary.nextOffset = scan.nextOffset
            if role != .sealed && scan.complete,
               let mismatch = RecoveryPlan.cleanEnd(stateFile: state, lastBaseOffset: base, nextOffset: scan.nextOffset, size: scan.end) {
                findings.append(Finding(isFault: true, path: path, message: mismatch, refusesOpen: true))
            }
        }
    }

    /// Scans one segment whole; returns where its valid batches end. Damage is judged by
    /// `RecoveryPlan` for the segment's role, as open judges it; corruption in the part of
    /// the file the plan has open read (given the index files) is marked `refusesOpen`.
    static func checkSegment(
        path: String, directory: String, baseOffset: Int64, role: RecoveryPlan.Role, isFlip: Bool = false,
        previousTimestamp: Int64, fileIO: any FileIO, summary: inout PartitionSummary, findings: inout [Finding]
    ) -> (nextOffset: Int64, lastTimestamp: Int64, end: Int64, complete: Bool) {
        let file: any StorageFile
        let size: Int64
        do {
            file = try fileIO.open(path, mode: .readOnly)
            size = try file.size()
        } catch {
            findings.append(Finding(isFault: true, path: path, message: "\(error)"))
            return (baseOffset, previousTimestamp, 0, false)
        }
        defer { try? file.close() }
        let handle = SegmentHandle(directory: directory, baseOffset: baseOffset, file: file)
        let indexed = PartitionRecovery.loadIndexes(handle, fileIO: fileIO)
        let start = RecoveryPlan.start(role: role, fileSize: size, indexCoverage: indexed?.size)
        /// Whether the plan has open read the byte at `position`: from its read start on,
        /// the last batch it verifies after a clean shutdown, the first batch of the last
        /// segment (its age decides the next roll).
        func openReads(_ position: Int64) -> Bool {
            if role != .sealed && position == 0 { return true }
            switch start {
            case .corruption: return true
            case .read(let from, _): return position >= from
            case .useIndexes(let verifyLastBatch): return verifyLastBatch && position >= (indexed?.lastBatchPosition ?? 0)
            }
        }
        var segment = SegmentState(handle: handle)
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
                let end: RecoveryPlan.End
                do {
                    end = try PartitionRecovery.judgeEnd(role: role, file: file, invalid: (position, reason), fileSize: size)
                } catch {
                    end = .corruption(at: position, because: "the end of written data could not be read: \(error)")
                }
                switch end {
                case .intact:
                    break
                case .preWrittenZeros(let from):
                    findings.append(Finding(isFault: false, path: path, position: from, message: "\(size - from) bytes of pre-written zeros after the last batch; the next open trims them"))
                case .tornTail(let from, let writtenEnd):
                    findings.append(Finding(isFault: false, path: path, position: from, message: "torn tail of \(size - from) bytes (\(reason); written up to byte \(writtenEnd)); the next open truncates it, nothing there was acknowledged as durable"))
                case .corruption(let at, let because):
                    findings.append(Finding(isFault: true, path: path, position: at, message: "invalid batch: \(reason) (\(because))", refusesOpen: openReads(at)))
                    readWhole = false
                }
                break scan
            case .batch(let batch):
                if isFlip && role == .sealed { contents.add(scanner, batch) }
                batchStarts[batch.position] = (batch.header.baseOffset, batch.header.maxTimestamp)
                summary.batchCount += 1
                summary.recordCount += Int64(batch.header.recordCount)
                summary.bytes += Int64(batch.size)
                segment.recordWritten(position: batch.position, size: batch.size, baseOffset: batch.header.baseOffset,
                                      nextOffset: batch.header.nextOffset, appendTime: batch.header.maxTimestamp, indexIntervalBytes: Int.max)
            }
        }
        segment.markDurable()
        // The plan refuses before reading (bytes after a clean end, an empty sealed
        // segment): one finding, unless the scan already named the invalid batch there.
        if readWhole, case .corruption(let why) = start {
            findings.append(Finding(isFault: true, path: path, message: why, refusesOpen: true))
        }
        // Past corruption the log's batches are unknown, so the indexes cannot be judged.
        if readWhole { checkIndexes(segment: segment, indexed: indexed, start: start, role: role, batchStarts: batchStarts, findings: &findings) }
        if readWhole && isFlip && role == .sealed { contents.check(directory: directory, baseOffset: baseOffset, fileIO: fileIO, findings: &findings) }
        return (segment.nextOffset, max(previousTimestamp, segment.maxTimestamp), segment.size, readWhole)
    }

    /// Index files must agree with the batches the scan found: every entry at a batch
    /// start with that batch's offset and time, the coverage at a batch boundary with the
    /// offsets and time found there. `start` is what the plan makes of them at open.
    static func checkIndexes(
        segment: SegmentState, indexed: SegmentState?, start: RecoveryPlan.Start, role: RecoveryPlan.Role,
        batchStarts: [Int64: (offset: Int64, time: Int64)], findings: inout [Finding]
    ) {
        let handle = segment.handle
        // Sealed segments and the last one after a clean shutdown had their indexes
        // written and synced: damage there is a fault, though open rebuilds them.
        let synced = !role.mayHaveTornTail
        guard let loaded = indexed else {
            let message = "index files are missing or fail their checksum; the next open rebuilds them"
            findings.append(Finding(isFault: synced && segment.size > 0, path: handle.indexPath, message: message))
            return
        }
        if case .corruption = start { return }  // reported with the segment: open refuses
        var problems: [String] = []
        if case .read(_, rebuildIndexes: true) = start {
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
            let remedy: String
            if case .read(_, rebuildIndexes: true) = start { remedy = "the next open rebuilds them" } else { remedy = "the next open would trust them: delete them and it rebuilds them" }
            findings.append(Finding(isFault: true, path: handle.indexPath, message: "index files disagree with the log: " + problems.joined(separator: "; ") + "; " + remedy))
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
