import LogFormat
import LogIO
import Logging

/// Read-only access to the data directory of a stopped server, for offline readers
/// (`lodestone pauliz --data`). It takes the directory's lock for as long as it is open,
/// so it never reads a store a server has open (and no server opens the store while it
/// reads), and it changes nothing: a torn tail after an unclean stop is left in place
/// and not read; corruption is an error naming the file and byte.
public final class DirectoryReader {
    public let directory: String
    let fileIO: any FileIO
    private let lock: any DirectoryLock

    /// One segment file of a partition.
    public struct SegmentFile: Sendable, Equatable {
        public var path: String
        public var baseOffset: Int64
        public var size: Int64
    }

    /// A partition's segments in offset order, and what reading them needs to know.
    public struct PartitionFiles: Sendable {
        public var topic: String
        public var partition: Int
        public var directory: String
        public var segments: [SegmentFile]
        /// The partition was shut down cleanly: its last segment ends at its last batch.
        public var cleanShutdown: Bool { lastRole == .lastAfterCleanShutdown }
        /// What the last segment's damage can mean (`RecoveryPlan`, as open decides).
        var lastRole: RecoveryPlan.Role
        public var bytes: Int64 { segments.reduce(0) { $0 + $1.size } }
    }

    /// How a segment's reading ended.
    public struct SegmentEnd: Sendable, Equatable {
        /// The offset after its last valid batch.
        public var nextOffset: Int64
        /// Bytes after the last valid batch that were not read (a torn tail or
        /// pre-written zeros of the active segment).
        public var unreadBytes: Int64
    }

    public init(directory: String, fileIO: any FileIO) throws(StorageError) {
        guard fileIO.exists(directory) else { throw StorageError(.notFound, "\(directory) does not exist") }
        guard fileIO.exists(joinPath(directory, "topics")) || fileIO.exists(joinPath(directory, "store.meta")) else {
            throw StorageError(.notFound, "\(directory) is not a Lodestone data directory (no store.meta, no topics)")
        }
        self.directory = directory
        self.fileIO = fileIO
        self.lock = try LogStore.lockDirectory(directory, fileIO: fileIO)
    }

    deinit { lock.release() }

    private func topicDirectory(_ topic: String) -> String {
        joinPath(directory, "topics", TopicName.directoryName(for: topic))
    }

    public func topicConfiguration(_ topic: String) throws(StorageError) -> TopicConfiguration {
        let path = topicDirectory(topic)
        guard fileIO.exists(path) else { throw StorageError(.notFound, "topic \(topic) does not exist in \(directory)") }
        return try LogStore.readTopicConfiguration(path, fileIO: fileIO)
    }

    public func partitionFiles(topic: String, partition: Int) throws(StorageError) -> PartitionFiles {
        let partitionDirectory = joinPath(topicDirectory(topic), String(partition))
        let names: [String]
        do { names = try fileIO.list(partitionDirectory) } catch { throw StorageError.io(error, "listing \(partitionDirectory)") }
        var silent = Logger(label: "lodestone.reader")
        silent.logLevel = .critical
        let state = PartitionRecovery.readStateFile(directory: partitionDirectory, fileIO: fileIO, logger: silent)
        var segments: [SegmentFile] = []
        let bases = names.compactMap({ SegmentFileName.parse($0).flatMap { $0.kind == .log ? $0.baseOffset : nil } }).sorted()
        for base in bases {
            let path = joinPath(partitionDirectory, SegmentFileName.name(baseOffset: base, kind: .log))
            do {
                let file = try fileIO.open(path, mode: .readOnly)
                defer { try? file.close() }
                segments.append(SegmentFile(path: path, baseOffset: base, size: try file.size()))
            } catch {
                throw StorageError.io(error, "opening \(path)")
            }
        }
        return PartitionFiles(
            topic: topic, partition: partition, directory: partitionDirectory, segments: segments,
            lastRole: RecoveryPlan.role(index: bases.count - 1, count: bases.count, stateFile: state))
    }

    /// Segments follow each other without a gap or an overlap (`RecoveryPlan`'s rule, as
    /// open and check hold it): throws corruption when `segment` does not start where the
    /// one before it ended (`previousNextOffset`; nil when that is not known, e.g. after a
    /// segment skipped by its summary).
    public func requireContinuity(after previousNextOffset: Int64?, _ segment: SegmentFile) throws(StorageError) {
        if let gap = RecoveryPlan.continuity(previousNextOffset: previousNextOffset, baseOffset: segment.baseOffset) {
            throw StorageError.corruption(segment.path, "\(gap); `lodestone check` reports more")
        }
    }

    /// The summary of a sealed flip segment, nil when it has none that can be trusted
    /// (never for the last segment of a partition, which may still grow).
    public func summary(of segment: SegmentFile, in partition: PartitionFiles) -> SegmentSummary? {
        guard segment != partition.segments.last else { return nil }
        return SegmentSummary.read(directory: partition.directory, baseOffset: segment.baseOffset, fileIO: fileIO)
    }

    /// Calls `body` with every valid batch of one segment, in order (header and the whole
    /// batch's bytes, CRC checked). Past the last valid batch: in the last segment of a
    /// partition not shut down cleanly, a torn tail or zeros are left unread; anywhere
    /// else invalid bytes are corruption, thrown as an error.
    public func forEachBatch(
        in segment: SegmentFile, of partition: PartitionFiles, _ body: (RecordBatchHeader, UnsafeRawBufferPointer) throws -> Void
    ) throws -> SegmentEnd {
        let file: any StorageFile
        do { file = try fileIO.open(segment.path, mode: .readOnly) } catch { throw StorageError.io(error, "opening \(segment.path)") }
        defer { try? file.close() }
        let isLast = segment == partition.segments.last
        var scanner = BatchScanner(file: file, from: 0, offset: segment.baseOffset, endPosition: segment.size, chunkBytes: 4 << 20)
        var nextOffset = segment.baseOffset
        while true {
            let step: BatchScanner.Step
            do { step = try scanner.next() } catch { throw StorageError.io(error, "reading \(segment.path)") }
            switch step {
            case .end:
                return SegmentEnd(nextOffset: nextOffset, unreadBytes: 0)
            case .batch(let batch):
                try scanner.withBatchBytes(batch) { try body(batch.header, $0) }
                nextOffset = batch.header.nextOffset
            case .invalid(let position, let reason):
                let end: RecoveryPlan.End
                do {
                    end = try PartitionRecovery.judgeEnd(role: isLast ? partition.lastRole : .sealed, file: file, invalid: (position, reason), fileSize: segment.size)
                } catch {
                    throw StorageError.io(error, "reading \(segment.path)")
                }
                switch end {
                case .intact, .preWrittenZeros, .tornTail:
                    return SegmentEnd(nextOffset: nextOffset, unreadBytes: segment.size - position)
                case .corruption(_, let because):
                    throw StorageError.corruption(segment.path, position: position, "invalid batch at byte \(position): \(reason) (\(because)); `lodestone check` reports more")
                }
            }
        }
    }
}
