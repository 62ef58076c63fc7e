import LogFormat

/// What a partition's files mean (design decision 6), decided from what they look like and
/// nothing else: no file is read here. Opening a partition (`PartitionRecovery`),
/// `lodestone check` (`StoreChecker`) and the offline reader (`DirectoryReader`) gather
/// the facts their own way and act on the same answers, so what check reports is what
/// open decides.
///
/// The facts: a segment's place (sealed, or the last one after a clean shutdown or an
/// unclean stop), its file size, how far its index files reach (when they are valid), the
/// position of the first invalid batch a scan met, and where written data ends after it
/// (the position after the last non-zero byte; pre-written zeros follow it).
///
/// What the decisions rest on: at most one group write is unsynced at any moment, and it is at
/// most `groupWriteBytesMax` bytes (the value recorded in `partition.state` for the run
/// that wrote it, recorded before its first append); a segment is fully synced before the
/// next one is created; index files are derived and carry a checksum and the span of the
/// log they cover, written only for synced data, so the active segment's index coverage
/// is its recovery point.
///
/// The decision table (p: position of the first invalid batch; e: the end of written data,
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
enum RecoveryPlan {
    /// A segment's place in its partition, which decides what damage in it can mean.
    enum Role: Equatable, Sendable {
        /// Any but the last segment: synced whole before the next one was created.
        case sealed
        /// The last segment after a clean shutdown: trimmed, indexed and synced.
        case lastAfterCleanShutdown
        /// The last segment after an unclean stop: its last group write, at most `window`
        /// bytes, may be torn.
        case lastAfterUncleanStop(window: Int64)

        /// Whether bytes after the last valid batch can be something other than
        /// corruption (a torn tail or pre-written zeros): only after an unclean stop.
        var mayHaveTornTail: Bool {
            if case .lastAfterUncleanStop = self { return true }
            return false
        }
    }

    /// The role of segment `index` of `count`, given the partition's state file (nil when
    /// missing or unreadable: recovered as after an unclean stop). The torn-tail window is
    /// the group-write size recorded for the run that wrote (it is recorded at open,
    /// before the first append), else the largest one allowed.
    static func role(index: Int, count: Int, stateFile: PartitionStateFile?) -> Role {
        if index < count - 1 { return .sealed }
        if stateFile?.clean == true { return .lastAfterCleanShutdown }
        return .lastAfterUncleanStop(window: Int64(stateFile?.groupWriteBytesMax ?? Limits.groupWriteBytesMax))
    }

    /// Where reading a segment starts at open.
    enum Start: Equatable, Sendable {
        /// Its index files cover it whole: use them. After a clean shutdown the last batch
        /// is still read, to prove the end the index names is a batch's end.
        case useIndexes(verifyLastBatch: Bool)
        /// Read from `position` to the file's end (`position` is the index coverage, or 0
        /// when the index files are unusable); `rebuildIndexes` when they were unusable.
        case read(from: Int64, rebuildIndexes: Bool)
        /// The files cannot be what this role allows: open refuses.
        case corruption(String)
    }

    /// `indexCoverage`: the bytes the index files cover, nil when they are missing, fail
    /// their checksum or disagree with themselves.
    static func start(role: Role, fileSize: Int64, indexCoverage: Int64?) -> Start {
        switch role {
        case .sealed:
            if fileSize == 0 { return .corruption("a sealed segment is empty") }
            if indexCoverage == fileSize { return .useIndexes(verifyLastBatch: false) }
            return .read(from: 0, rebuildIndexes: true)
        case .lastAfterCleanShutdown:
            guard let covered = indexCoverage else { return .read(from: 0, rebuildIndexes: true) }
            if covered != fileSize {
                return .corruption("after a clean shutdown the log should end at byte \(covered), but the file holds \(fileSize) bytes")
            }
            return .useIndexes(verifyLastBatch: true)
        case .lastAfterUncleanStop:
            // The index coverage is the recovery point: synced data, re-read from there.
            if let covered = indexCoverage, covered <= fileSize { return .read(from: covered, rebuildIndexes: false) }
            return .read(from: 0, rebuildIndexes: fileSize > 0)
        }
    }

    /// What follows the last valid batch of a segment.
    enum End: Equatable, Sendable {
        /// The segment ends at its last valid batch.
        case intact
        /// Only zeros from `from` on: pre-written space, trimmed at the next open. Not a tear.
        case preWrittenZeros(from: Int64)
        /// Non-zero bytes within the torn-tail window: the unsynced last group write, cut
        /// at the next open (none of it was acknowledged as durable).
        case tornTail(from: Int64, writtenEnd: Int64)
        /// An invalid batch where nothing can be torn: open refuses, naming the position.
        case corruption(at: Int64, because: String)
    }

    /// `invalidAt`: where the scan met its first invalid batch, nil when it reached the
    /// file's end. `writtenEnd`: where written data ends from there on, needed only when
    /// `role.mayHaveTornTail` (nil otherwise).
    static func end(role: Role, invalidAt: Int64?, writtenEnd: Int64?) -> End {
        guard let position = invalidAt else { return .intact }
        switch role {
        case .sealed:
            return .corruption(at: position, because: "in a sealed segment, whose data was synced")
        case .lastAfterCleanShutdown:
            return .corruption(at: position, because: "after a clean shutdown nothing can be torn")
        case .lastAfterUncleanStop(let window):
            guard let writtenEnd else { preconditionFailure("the end of written data is needed after an unclean stop") }
            if writtenEnd <= position { return .preWrittenZeros(from: position) }
            if writtenEnd - position <= window { return .tornTail(from: position, writtenEnd: writtenEnd) }
            return .corruption(
                at: position,
                because: "data was written up to byte \(writtenEnd), \(writtenEnd - position) bytes after it, more than one group write of at most \(window) bytes, so it was synced")
        }
    }

    /// Segments must follow each other without a gap or an overlap: why not, or nil.
    static func continuity(previousNextOffset: Int64?, baseOffset: Int64) -> String? {
        guard let previous = previousNextOffset, previous != baseOffset else { return nil }
        return "segment starts at offset \(baseOffset) but the previous segment ends at offset \(previous)"
    }

    /// After a clean shutdown the state file names where the log ends; the files must end
    /// there: why they do not, or nil.
    static func cleanEnd(stateFile: PartitionStateFile?, lastBaseOffset: Int64, nextOffset: Int64, size: Int64) -> String? {
        guard let stateFile, stateFile.clean else { return nil }
        if stateFile.lastSegmentBaseOffset == lastBaseOffset && stateFile.nextOffset == nextOffset && stateFile.endPosition == size { return nil }
        return "the clean-shutdown record says the log ends at offset \(stateFile.nextOffset), position \(stateFile.endPosition) of segment \(stateFile.lastSegmentBaseOffset), but the files end at offset \(nextOffset), position \(size)"
    }
}
