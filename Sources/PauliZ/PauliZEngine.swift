import DequeModule

/// The aggregation engine of spec/pauli-z.md: fed the flip events of a topic in log
/// order (each resource's events in its partition's order; partitions one after another
/// or interleaved, as resources never share one), it keeps per resource the state the
/// rules need (the previous event, the effective time, the storm tracker and the rows of
/// the windows still open) and hands finished rows to a sorter. `finish` closes every
/// resource at the horizon and returns the rows in output order and the episodes.
///
/// Memory: per live resource its state and at most W/H + W/H open rows, plus the sorter's
/// in-memory rows (spilled as sorted runs beyond a limit); never the history.
///
/// How time is accounted: between two events of a resource (effective times a < b) its
/// state is constant (the polarity of the event at a; in a storm or not, up to an end
/// that only flips leaving can cause). When the event at b arrives, the interval [a, b)
/// is added to the rows of the windows containing a (open) and b (opened now): windows
/// holding neither have no event of the resource and emit no row. A row is finished when
/// an event reaches its end, or at the horizon.
public final class PauliZEngine {
    public let query: PauliZQuery
    public private(set) var resources = ByteStringTable()
    private var polarityStates = ByteStringTable()
    private var polarityValues: [Int8] = []
    private var states: [ResourceState] = []
    private var sorter: RowSorter
    private var episodes: [PauliZEpisode] = []
    /// The largest event time seen (ingested or only observed): the horizon so far.
    public private(set) var largestTime: Int64?
    public private(set) var eventCount: Int64 = 0

    private let window: Int64
    private let hop: Int64
    private let windowsPerEvent: Int64
    private let stormInterval: Int64
    private let stormEnter: Int
    private let stormExit: Int

    struct ResourceState {
        var lastTo: [UInt8] = []
        var lastEpoch: Int64 = 0
        var lastSeq: Int64 = 0
        /// Effective time of the last event.
        var lastTime: Int64 = 0
        /// The state's polarity since `lastTime`.
        var polarity: Int8 = 0
        /// Rows of the open windows, by start; each contains `lastTime`.
        var rows: [PauliZRow] = []
        var storm = StormTracker()
    }

    public init(query: PauliZQuery, rowsInMemoryMax: Int = PauliZLimits.rowsInMemoryDefault, temporaryDirectory: String? = nil) throws(PauliZError) {
        try query.validate()
        self.query = query
        window = query.windowMilliseconds
        hop = query.hopMilliseconds
        windowsPerEvent = query.windowMilliseconds / query.hopMilliseconds
        stormInterval = query.storm.intervalMilliseconds
        stormEnter = query.storm.enter
        stormExit = query.storm.exit
        sorter = RowSorter(rowsInMemoryMax: rowsInMemoryMax, temporaryDirectory: temporaryDirectory)
        for (state, polarity) in query.polarityMap.sorted(by: { $0.key < $1.key }) {
            _ = polarityStates.intern(state)
            polarityValues.append(polarity)
        }
    }

    /// An event's time that is not ingested (a filtered-out resource): it still moves the
    /// horizon, which is the whole topic's.
    @inline(__always)
    public func observe(time: Int64) {
        if let largest = largestTime, largest >= time { return }
        largestTime = time
    }

    /// One flip event, fields as stored (spec section 1): `from`/`to` as UTF-8 bytes,
    /// `polarity` nil when absent (the topic's map then decides), whether actor and reason
    /// are non-empty.
    public func ingest(
        resource: UnsafeRawBufferPointer, from: UnsafeRawBufferPointer, to: UnsafeRawBufferPointer, polarity: Int8?,
        hasActor: Bool, hasReason: Bool, epoch: Int64, seq: Int64, time: Int64
    ) throws(PauliZError) {
        observe(time: time)
        eventCount += 1
        let id = resources.intern(resource)
        let isNew = Int(id) == states.count
        if isNew { states.append(ResourceState()) }
        let resolved = polarity ?? polarityStates.find(to).map { polarityValues[Int($0)] } ?? 0
        try process(&states[Int(id)], id: id, isNew: isNew, from: from, to: to, polarity: resolved,
                    covered: hasActor && hasReason, epoch: epoch, seq: seq, time: time)
    }

    private func process(
        _ state: inout ResourceState, id: Int32, isNew: Bool, from: UnsafeRawBufferPointer, to: UnsafeRawBufferPointer,
        polarity: Int8, covered: Bool, epoch: Int64, seq: Int64, time: Int64
    ) throws(PauliZError) {
        let effective: Int64
        if isNew {
            effective = time
            openRows(&state, id: id, at: effective)
        } else {
            effective = max(time, state.lastTime)
            if effective > state.lastTime { try advance(&state, id: id, to: effective, horizon: false) }
        }
        let isFlip: Bool
        if !from.isEmpty {
            isFlip = !Self.equal(to, from)
        } else {
            isFlip = !isNew && !state.lastTo.withUnsafeBytes { Self.equal(to, $0) }
        }
        let chainBreak = !isNew && !from.isEmpty && !state.lastTo.withUnsafeBytes { Self.equal(from, $0) }
        let seqGap = !isNew && epoch == state.lastEpoch && seq > state.lastSeq + 1
        let epochChange = !isNew && epoch > state.lastEpoch
        let clockRegression = !isNew && time < state.lastTime
        // Every open row contains `effective` (rows ending at or before it were finished).
        for index in state.rows.indices {
            state.rows[index].events += 1
            if isFlip {
                state.rows[index].flips += 1
                if polarity > 0 { state.rows[index].up += 1 } else if polarity < 0 { state.rows[index].down += 1 }
                if covered { state.rows[index].covered += 1 }
            }
            if chainBreak { state.rows[index].chainBreaks += 1 }
            if seqGap { state.rows[index].seqGaps += 1 }
            if epochChange { state.rows[index].epochChanges += 1 }
            if clockRegression { state.rows[index].clockRegressions += 1 }
        }
        state.storm.arrive(effective, isFlip: isFlip, interval: stormInterval)
        if isNew || !state.lastTo.withUnsafeBytes({ Self.equal(to, $0) }) {
            state.lastTo.removeAll(keepingCapacity: true)
            state.lastTo.append(contentsOf: to)
        }
        state.lastEpoch = epoch
        state.lastSeq = seq
        state.lastTime = effective
        state.polarity = polarity
    }

    /// Moves a resource's timeline from its last event to `t` (a later event's effective
    /// time, or the horizon): closes the last instant for storms, lets flips leave, opens
    /// the rows of the windows containing `t` (not at the horizon: no event there), adds
    /// the interval to the open rows, and finishes rows that end by `t`.
    private func advance(_ state: inout ResourceState, id: Int32, to t: Int64, horizon: Bool) throws(PauliZError) {
        let a = state.lastTime
        if let ended = state.storm.closeInstant(resource: id, enter: stormEnter, exit: stormExit) { episodes.append(ended) }
        let stormAtA = state.storm.inStorm
        let ended = state.storm.dropsBefore(t, inclusive: horizon, interval: stormInterval, exit: stormExit, resource: id)
        if let ended { episodes.append(ended) }
        let stormUntil = stormAtA ? (ended?.end ?? t) : a
        if !horizon { openRows(&state, id: id, at: t) }
        let polarity = Int64(state.polarity)
        for index in state.rows.indices {
            let start = state.rows[index].windowStart
            let lo = max(a, start)
            let hi = min(t, start + window)
            if hi > lo {
                state.rows[index].knownMilliseconds += hi - lo
                state.rows[index].integral += polarity * (hi - lo)
            }
            let stormHi = min(stormUntil, start + window)
            if stormHi > lo { state.rows[index].stormMilliseconds += stormHi - lo }
        }
        var finished = 0
        while finished < state.rows.count && (horizon || state.rows[finished].windowStart + window <= t) {
            try emit(state.rows[finished])
            finished += 1
        }
        if finished > 0 { state.rows.removeFirst(finished) }
    }

    /// Appends rows for the windows containing `t` that are not open yet.
    private func openRows(_ state: inout ResourceState, id: Int32, at t: Int64) {
        let top = floorDivide(t, hop) * hop
        var start = top - (windowsPerEvent - 1) * hop
        if let last = state.rows.last?.windowStart { start = max(start, last + hop) }
        while start <= top {
            state.rows.append(PauliZRow(windowStart: start, key: id))
            start += hop
        }
    }

    private func emit(_ row: PauliZRow) throws(PauliZError) {
        if let from = query.from, row.windowStart < from { return }
        if let to = query.to, row.windowStart >= to { return }
        try sorter.add(row, resources: resources)
    }

    /// Closes every resource at the horizon (the largest time seen, or `horizon` when the
    /// caller knows a larger one, e.g. from skipped segments) and returns the result.
    public func finish(horizon: Int64? = nil) throws(PauliZError) -> PauliZResult {
        if let horizon { observe(time: horizon) }
        guard let hz = largestTime else {
            return PauliZResult(query: query, resources: resources, horizon: nil, rows: sorter, episodes: [])
        }
        for index in states.indices {
            let id = Int32(index)
            try advance(&states[index], id: id, to: hz, horizon: true)
            if let open = states[index].storm.openEpisode(resource: id) { episodes.append(open) }
        }
        states.removeAll()
        let from = query.from
        let to = query.to
        var selected = episodes.filter { episode in
            if let to, episode.start >= to { return false }
            if let from, let end = episode.end, end <= from { return false }
            return true
        }
        let table = resources
        selected.sort { a, b in a.start != b.start ? a.start < b.start : table.less(a.resource, b.resource) }
        return PauliZResult(query: query, resources: resources, horizon: hz, rows: sorter, episodes: selected)
    }

    @inline(__always)
    static func equal(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        a.count == b.count && (a.isEmpty || memcmpBytes(a.baseAddress!, b.baseAddress!, a.count))
    }
}

/// What a query produced: rows in output order (window start, then resource bytewise;
/// read once, as they may stream from spilled runs) and the selected storm episodes.
public struct PauliZResult {
    public let query: PauliZQuery
    public let resources: ByteStringTable
    /// The horizon: nil when the topic holds no events.
    public let horizon: Int64?
    let rows: RowSorter
    public let episodes: [PauliZEpisode]

    /// Calls `body` with each row in order.
    public func forEachRow(_ body: (PauliZRow) throws -> Void) throws {
        try rows.drain(resources: resources, body)
    }

    public func name(of id: Int32) -> String { resources.string(id) }
}
