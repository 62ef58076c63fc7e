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
/// rows are the same either way. Past `rowsMax` finished rows the state stops answering
/// and frees its rows (replays answer from then on), so its memory stays bounded.
/// Finished rows are kept in memory as the engine hands them over (never spilled).
public final class PauliZLive: @unchecked Sendable {
    public static let windowMilliseconds: Int64 = 60_000
    public static let rowsMaxDefault = 1_000_000

    public let query: PauliZQuery
    private let rowsMax: Int
    /// Guards `core` and `overflowed` (the engine's classes are not thread-safe; every
    /// use of them here is under this lock).
    private let lock = Mutex(())
    private var core: EngineCore
    private var overflowed = false

    public init(storm: StormParameters, polarityMap: [String: Int8], rowsMax: Int = PauliZLive.rowsMaxDefault) throws(PauliZError) {
        let query = PauliZQuery(windowMilliseconds: Self.windowMilliseconds, storm: storm, polarityMap: polarityMap)
        try query.validate()
        self.query = query
        self.rowsMax = rowsMax
        core = EngineCore(query: query, sorter: RowSorter(temporaryDirectory: nil), rowsInMemoryMax: Int.max)
    }

    /// Whether the state gave up (too many rows, or a batch it could not take): replays answer.
    public var hasOverflowed: Bool { lock.withLock { _ in overflowed } }

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
            if overflowed || core.sorter.memoryRows + core.finished.count > rowsMax {
                overflowed = true
                core = EngineCore(query: query, sorter: RowSorter(temporaryDirectory: nil), rowsInMemoryMax: Int.max)
            }
        }
    }

    /// Rows and episodes for `query`, as a replay of the same durable log would give
    /// them, with the resources `filter` keeps; nil when this state cannot answer.
    public func answer(_ query: PauliZQuery, filter: ResourceFilter) throws(PauliZError) -> PauliZResult? {
        guard covers(query) else { return nil }
        // A copy of the state (arrays are shared until written), closed at the horizon.
        guard let snapshot = lock.withLock({ _ -> EngineCore? in self.overflowed ? nil : self.core }) else { return nil }
        var core = snapshot
        let sorter = RowSorter(temporaryDirectory: nil)
        let keep = Self.keeper(filter, resources: core.resources)
        for chunk in core.sorter.memoryChunks + [core.finished] {
            sorter.keep(chunk.filter { row in keep(row.key) && (query.from.map { row.windowStart >= $0 } ?? true) && (query.to.map { row.windowStart < $0 } ?? true) })
        }
        core.sorter = sorter
        core.finished = []
        core.parameters = EngineParameters(
            window: core.parameters.window, hop: core.parameters.hop, windowsPerEvent: core.parameters.windowsPerEvent,
            stormInterval: core.parameters.stormInterval, stormEnter: core.parameters.stormEnter, stormExit: core.parameters.stormExit,
            from: query.from, to: query.to)
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
