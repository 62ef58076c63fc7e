import LogFormat
import LogIO
import Logging

// Replay-protection snapshots: written at checkpoints and the clean close, read back
// (with the log after them) when a partition opens.
extension PartitionLog {
    // MARK: Replay-protection snapshots

    /// Writes the durable replay-protection state as of the durable end (after expiring
    /// idle producers), atomically, and keeps only the two newest snapshots. Called by the
    /// writer at a roll (the previous segment fully synced) and at clean shutdown.
    func writeSnapshot() throws(IOError) {
        let now = clock.nowMilliseconds()
        let (bytes, offset) = state.withLock { state -> ([UInt8], Int64) in
            state.statistics.producersExpiredCount += state.replay.expireProducers(now: now)
            state.statistics.snapshotCount += 1
            return (ReplaySnapshot.encode(state.replay, offset: state.durableEnd), state.durableEnd)
        }
        try fileIO.writeFileAtomically(joinPath(directory, ReplaySnapshot.fileName(offset: offset)), bytes)
        let older = try fileIO.list(directory).compactMap(ReplaySnapshot.offset(ofFileName:)).filter { $0 < offset }.sorted()
        for stale in older.dropLast() { try fileIO.remove(joinPath(directory, ReplaySnapshot.fileName(offset: stale))) }
    }

    /// Replay-protection state after recovery: the newest readable snapshot at or below
    /// the log's end (snapshots past it describe batches a crash took, and are removed),
    /// then every batch after it, read from the log.
    static func rebuildReplayState(directory: String, segments: [SegmentState], isFlipTopic: Bool, environment: StorageEnvironment) throws(StorageError) -> ReplayState {
        let configuration = environment.configuration
        var replay = ReplayState(
            producerExpirationMilliseconds: configuration.producerExpirationMilliseconds,
            producersTrackedMax: configuration.producersTrackedMax, resourcesTrackedMax: configuration.resourcesTrackedMax)
        let end = segments[segments.count - 1].nextOffset
        let fileIO = environment.fileIO
        var from = segments[0].baseOffset
        do {
            let offsets = try fileIO.list(directory).compactMap(ReplaySnapshot.offset(ofFileName:)).sorted(by: >)
            for offset in offsets {
                let path = joinPath(directory, ReplaySnapshot.fileName(offset: offset))
                if offset > end || offset < from {
                    try fileIO.remove(path)
                    continue
                }
                var candidate = replay
                do {
                    _ = try ReplaySnapshot.decode(try fileIO.readWholeFile(path, bytesMax: Limits.snapshotBytesMax), into: &candidate, name: path)
                    replay = candidate
                    from = offset
                    break
                } catch {
                    environment.logger.warning("replay-protection snapshot is unreadable; using an older one or the log", metadata: ["path": "\(path)", "error": "\(error)"])
                }
            }
        } catch {
            throw StorageError.io(error, "reading replay-protection snapshots")
        }
        for segment in segments where segment.nextOffset > from {
            let start: (position: Int64, offset: Int64) = segment.baseOffset <= from ? segment.startPosition(for: from) : (0, segment.baseOffset)
            var scanner = BatchScanner(file: segment.handle.file, from: start.position, offset: start.offset, endPosition: segment.size)
            while let batch = try scanner.nextForReader(path: segment.handle.logPath, context: "rebuilding replay protection") {
                if batch.header.lastOffset < from { continue }
                do {
                    try replay.applyStored(scanner.bytes(of: batch), header: batch.header, isFlipTopic: isFlipTopic)
                } catch {
                    throw StorageError.corruption(segment.handle.logPath, position: batch.position, "batch at byte \(batch.position) does not decode: \(error)")
                }
            }
        }
        replay.expireProducers(now: environment.clock.nowMilliseconds())
        return replay
    }
}
