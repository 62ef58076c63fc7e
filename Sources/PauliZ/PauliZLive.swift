import LogFormat
import Synchronization

/// Pauli-Z state kept up to date while a flip topic's appends commit, for the server's
/// live answers (spec section 9): one engine for the topic's live granularity, one-minute
/// tumbling windows with the topic's storm parameters, fed every durable batch in log order
/// (per partition; partitions may interleave, as they never share a resource).
///
/// Finished rows stay in memory, so any range of one-minute windows can be answered; the
/// resources' open windows and storms are closed at the horizon of the moment, on a copy,
/// for each answer. A query of another shape (window, hop, storm parameters) is not
/// answered here (nil): the server replays the log for it, with the same engine, so the
/// rows are the same either way. Past `rowsMax` finished rows the state forgets the older
/// half of its windows (by start) and from then on answers only queries that start at or
/// after the oldest window it still holds (`completeFrom`); replays answer the others. So
/// its memory stays bounded and recent windows stay live.
public final class PauliZLive: @unchecked Sendable {
    public static let windowMilliseconds: Int64 = 60_000
    public static let rowsMaxDefault = Limits.paulizLiveRowCountMax

    public let query: PauliZQuery
    private let rowsMax: Int
    /// Guards `core` and `overflowed` (the engine's classes are not thread-safe; every
    /// use of them here is under this lock).
    private let lock = Mutex(())
    private var core: EngineCore
    private var overflowed = false
    /// Windows starting before this were forgotten; nil while none were.
    private var forgottenBefore: Int64?

    public init(storm: StormParameters, polarityMap: [String: Int8], rowsMax: Int = PauliZLive.rowsMaxDefault) throws(PauliZError) {
        let query = PauliZQuery(windowMilliseconds: Self.windowMilliseconds, storm: storm, polarityMap: polarityMap)
        try query.validate()
        self.query = query
        self.rowsMax = rowsMax
        core = EngineCore(query: query, sorter: RowSorter(temporaryDirectory: nil), rowsInMemoryMax: Int.max)
    }

    /// Whether the state gave up (a batch it could not take, or too many rows in one
    /// window to forget any): replays answer.
    public var hasOverflowed: Bool { lock.withLock { _ in overflowed } }

    /// The start of the oldest window the state can still answer for; nil for all.
    public var completeFrom: Int64? { lock.withLock { _ in forgottenBefore } }

    /// Whether this state can answer `query` (its window, hop and storm parameters; any
    /// range and filter): then `answer` does, unless the state overflowed.
    public func covers(_ query: PauliZQuery) -> Bool {
        query.windowMilliseconds == self.query.windowMilliseconds && query.hopMilliseconds == self.query.hopMilliseconds
            && query.storm == self.query.storm && query.polarityMap == self.query.polarityMap
    }

    /// One durable batch of the topic (control batches hold no events). A batch the
    /// engine cannot take (it cannot happen to a batch the store accepted, but if it did)
    /// ends the live state rather than let it drift from the log: replays answer then.
    public func ingest(batch: UnsafeRawBufferPointer, header: RecordBatchHeader) {
        lock.withLock { _ in
            if overflowed { return }
            do {
                _ = try core.ingest(batch: batch, header: header, filter: .all)
                if core.finished.count >= 1 << 16 { try core.handOver() }
            } catch {
                overflowed = true
            }
            if !overflowed && core.sorter.memoryRows + core.finished.count > rowsMax { forgetOlderHalf() }
            if overflowed {
                core = EngineCore(query: query, sorter: RowSorter(temporaryDirectory: nil), rowsInMemoryMax: Int.max)
            }
        }
    }

    /// Drops the finished rows of the older half of the windows, and the episodes that
    /// ended before what is kept (under the lock).
    private func forgetOlderHalf() {
        do { try core.handOver() } catch { overflowed = true; return }
        var rows = core.sorter.takeChunks().flatMap { $0 }
        rows.sort { $0.windowStart < $1.windowStart }
        let cut = rows[rows.count / 2].windowStart
        rows.removeAll { $0.windowStart < cut }
        guard rows.count <= rowsMax else {
            overflowed = true
            return
        }
        forgottenBefore = max(forgottenBefore ?? cut, cut)
        core.sorter.keep(rows)
        core.episodes.removeAll { episode in episode.end.map { $0 <= cut } ?? false }
    }

    /// Rows and episodes for `query`, as a replay of the same durable log would give
    /// them, with the resources `filter` keeps; nil when this state cannot answer.
    public func answer(_ query: PauliZQuery, filter: ResourceFilter) throws(PauliZError) -> PauliZResult? {
        guard covers(query) else { return nil }
        // A copy of the state (arrays are shared until written), closed at the horizon.
        // The sorter is a class the ingesting thread changes: its chunks are taken under the
        // lock too.
        guard let (snapshot, chunks, forgotten) = lock.withLock({ _ -> (EngineCore, [[PauliZRow]], Int64?)? in
            self.overflowed ? nil : (self.core, self.core.sorter.memoryChunks, self.forgottenBefore)
        }) else { return nil }
        if let forgotten {
            guard let from = query.from, from >= forgotten else { return nil }
        }
        var core = snapshot
        let sorter = RowSorter(temporaryDirectory: nil)
        let keep = Self.keeper(filter, resources: core.resources)
        for chunk in chunks + [core.finished] {
            sorter.keep(chunk.filter { row in keep(row.key) && (query.from.map { row.windowStart >= $0 } ?? true) && (query.to.map { row.windowStart < $0 } ?? true) })
        }
        core.sorter = sorter
        core.finished = []
        core.parameters.from = query.from
        core.parameters.to = query.to
        // Rows of resources the filter drops are finished too, then left out.
        var result = try core.finish(query: query, horizon: nil)
        if filter != .all {
            result = PauliZResult(query: result.query, resources: result.resources, horizon: result.horizon, rows: result.rows,
                                  episodes: result.episodes.filter { keep($0.resource) }, keep: keep)
        }
        return result
    }

    static func keeper(_ filter: ResourceFilter, resources: ByteStringTable) -> (Int32) -> Bool {
        guard filter != .all else { return { _ in true } }
        var kept = [Bool](repeating: false, count: resources.count)
        for id in 0..<resources.count { kept[id] = resources.withBytes(Int32(id)) { filter.matches($0) } }
        return { id in Int(id) < kept.count ? kept[Int(id)] : false }
    }
}
