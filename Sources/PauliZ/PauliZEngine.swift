import LogFormat

/// The aggregation engine of Docs/spec/pauli-z.md: fed the flip events of a topic in log
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
    /// Everything that changes per event, in one struct: one access to it per event,
    /// instead of one exclusivity check per stored property of a class.
    private var core: EngineCore

    public var resources: ByteStringTable { core.resources }
    /// The largest event time seen (ingested or only observed): the horizon so far.
    public var largestTime: Int64? { core.largestTime }
    public var eventCount: Int64 { core.eventCount }

    public init(query: PauliZQuery, rowsInMemoryMax: Int = PauliZLimits.rowsInMemoryDefault, temporaryDirectory: String? = nil) throws(PauliZError) {
        try query.validate()
        self.query = query
        core = EngineCore(query: query, sorter: RowSorter(temporaryDirectory: temporaryDirectory), rowsInMemoryMax: rowsInMemoryMax)
    }

    /// An event's time that is not ingested (a filtered-out resource): it still moves the
    /// horizon, which is the whole topic's.
    @inline(__always)
    public func observe(time: Int64) { core.observe(time: time) }

    /// One flip event, fields as stored (spec section 1): `from`/`to` as UTF-8 bytes,
    /// `polarity` nil when absent (the topic's map then decides), whether actor and reason
    /// are non-empty.
    @inline(__always)
    public func ingest(
        resource: UnsafeRawBufferPointer, from: UnsafeRawBufferPointer, to: UnsafeRawBufferPointer, polarity: Int8?,
        hasActor: Bool, hasReason: Bool, epoch: Int64, seq: Int64, time: Int64
    ) throws(PauliZError) {
        try core.ingest(resource: resource, from: from, to: to, polarity: polarity, covered: hasActor && hasReason, epoch: epoch, seq: seq, time: time)
    }

    /// Every flip event of a stored batch (as `FlipRecords` reads it), those of resources
    /// `filter` keeps ingested, the others only observed. Returns how many events the
    /// batch held and how many were kept. A malformed batch throws `FormatError`.
    public func ingest(batch: UnsafeRawBufferPointer, header: RecordBatchHeader, filter: ResourceFilter) throws -> (events: Int64, selected: Int64) {
        try core.ingest(batch: batch, header: header, filter: filter)
    }

    /// Closes every resource at the horizon (the largest time seen, or `horizon` when the
    /// caller knows a larger one, e.g. from skipped segments) and returns the result.
    public func finish(horizon: Int64? = nil) throws(PauliZError) -> PauliZResult {
        try core.finish(query: query, horizon: horizon)
    }
}

/// The query's constants, as the per-event code reads them.
struct EngineParameters {
    let window: Int64
    let hop: Int64
    let windowsPerEvent: Int64
    let stormInterval: Int64
    let stormEnter: Int
    let stormExit: Int
    /// The query's range; a live answer sets its own on a copy.
    var from: Int64?
    var to: Int64?
}

struct ResourceState {
    /// The state the last event went to, held in the state itself (at most
    /// `FlipEvent.stateBytesMax` bytes): no buffer of its own to reach or copy into.
    var lastTo = StateName()
    var lastEpoch: Int64 = 0
    var lastSeq: Int64 = 0
    /// Effective time of the last event.
    var lastTime: Int64 = 0
    /// The index of the last window containing `lastTime` (`floor(lastTime / hop)`):
    /// kept, as most events of a resource fall in the window of the one before, and a
    /// 64-bit division is the dearest instruction on the per-event path.
    var lastWindow: Int64 = 0
    /// The state's polarity since `lastTime`.
    var polarity: Int8 = 0
    var storm = StormTracker()
}

/// A state name of at most `FlipEvent.stateBytesMax` bytes, stored inline.
struct StateName {
    private var words: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
    private(set) var count = 0
    static let capacity = FlipEvent.stateBytesMax
    /// Checked once (EngineCore.init): the words hold `capacity` bytes.
    static let fits = MemoryLayout<(UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64)>.size >= capacity

    /// Whether `bytes` are this name's bytes.
    @inline(__always)
    func equals(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count == count else { return false }
        if count == 0 { return true }
        return withUnsafeBytes(of: words) { memcmpBytes($0.baseAddress!, bytes.baseAddress!, count) }
    }

    /// Becomes `bytes` (the caller checked they fit).
    @inline(__always)
    mutating func assign(_ bytes: UnsafeRawBufferPointer) {
        count = bytes.count
        if bytes.isEmpty { return }
        withUnsafeMutableBytes(of: &words) { $0.baseAddress!.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
    }
}

struct EngineCore {
    var parameters: EngineParameters
    var resources = ByteStringTable()
    var polarityStates = ByteStringTable()
    var polarityValues: [Int8] = []
    var states: [ResourceState] = []
    /// The rows of every resource's open windows: resource `id`'s window `i` (start
    /// `i * hop`) lives at `id * windowsPerEvent + i mod windowsPerEvent`. After an event
    /// at `t`, a resource's open windows are exactly the `windowsPerEvent` windows
    /// containing `t`, so one slot per window suffices, and a window's slot is free again
    /// by the time a later window with the same slot opens (it ended at or before that
    /// window's start).
    var openRows: [PauliZRow] = []
    var sorter: RowSorter
    /// Finished rows not yet handed to the sorter: handed over in chunks (no regrowth
    /// copies of one huge array); past `rowsInMemoryMax` in memory the sorter spills them.
    var finished: [PauliZRow] = []
    let rowsInMemoryMax: Int
    let chunkRows: Int
    var episodes: [PauliZEpisode] = []
    var largestTime: Int64?
    var eventCount: Int64 = 0
    let decompressor = LZ4FrameDecompressor()

    init(query: PauliZQuery, sorter: RowSorter, rowsInMemoryMax: Int) {
        precondition(StateName.fits, "a state name's inline words must hold FlipEvent.stateBytesMax bytes")
        self.rowsInMemoryMax = max(rowsInMemoryMax, 1)
        chunkRows = min(self.rowsInMemoryMax, 1 << 20)
        finished.reserveCapacity(chunkRows)
        parameters = EngineParameters(
            window: query.windowMilliseconds, hop: query.hopMilliseconds, windowsPerEvent: query.windowMilliseconds / query.hopMilliseconds,
            stormInterval: query.storm.intervalMilliseconds, stormEnter: query.storm.enter, stormExit: query.storm.exit,
            from: query.from, to: query.to)
        self.sorter = sorter
        for (state, polarity) in query.polarityMap.sorted(by: { $0.key < $1.key }) {
            _ = polarityStates.intern(state)
            polarityValues.append(polarity)
        }
    }

    @inline(__always)
    mutating func observe(time: Int64) {
        if let largest = largestTime, largest >= time { return }
        largestTime = time
    }

    mutating func ingest(batch: UnsafeRawBufferPointer, header: RecordBatchHeader, filter: ResourceFilter) throws -> (events: Int64, selected: Int64) {
        var events: Int64 = 0
        var selected: Int64 = 0
        let everything = filter == .all
        try FlipRecords.forEach(batch: batch, header: header, decompressor: decompressor) { event in
            events += 1
            if everything || filter.matches(event.resource) {
                selected += 1
                try ingest(resource: event.resource, from: event.from, to: event.to, polarity: event.polarity,
                           covered: !event.actor.isEmpty && !event.reason.isEmpty, epoch: event.epoch, seq: event.seq, time: event.time)
            } else {
                observe(time: event.time)
            }
        }
        return (events, selected)
    }

    @inline(__always)
    mutating func ingest(
        resource: UnsafeRawBufferPointer, from: UnsafeRawBufferPointer, to: UnsafeRawBufferPointer, polarity: Int8?,
        covered: Bool, epoch: Int64, seq: Int64, time: Int64
    ) throws(PauliZError) {
        guard to.count <= StateName.capacity, from.count <= StateName.capacity else {
            throw PauliZError(.limitReached, "a flip event's state is longer than \(StateName.capacity) bytes")
        }
        observe(time: time)
        eventCount += 1
        let id = resources.intern(resource)
        let isNew = Int(id) == states.count
        if isNew {
            states.append(ResourceState())
            openRows.append(contentsOf: repeatElement(PauliZRow(windowStart: 0, key: id), count: Int(parameters.windowsPerEvent)))
        }
        let resolved: Int8
        if let polarity {
            resolved = polarity
        } else if polarityValues.isEmpty {
            resolved = 0
        } else {
            resolved = polarityStates.find(to).map { polarityValues[Int($0)] } ?? 0
        }
        try Self.process(&states[Int(id)], id: id, isNew: isNew, from: from, to: to, polarity: resolved, covered: covered,
                         epoch: epoch, seq: seq, time: time, parameters: parameters, openRows: &openRows, episodes: &episodes, finished: &finished)
        if finished.count >= chunkRows { try handOver() }
    }

    /// Gives the finished rows to the sorter as one chunk.
    mutating func handOver() throws(PauliZError) {
        sorter.keep(finished)
        finished = []
        finished.reserveCapacity(chunkRows)
        if sorter.memoryRows >= rowsInMemoryMax { try sorter.spill(resources: resources) }
    }

    static func process(
        _ state: inout ResourceState, id: Int32, isNew: Bool, from: UnsafeRawBufferPointer, to: UnsafeRawBufferPointer,
        polarity: Int8, covered: Bool, epoch: Int64, seq: Int64, time: Int64,
        parameters: EngineParameters, openRows: inout [PauliZRow], episodes: inout [PauliZEpisode], finished: inout [PauliZRow]
    ) throws(PauliZError) {
        let effective: Int64
        let last: Int64
        if isNew {
            effective = time
            last = floorDivide(effective, parameters.hop)
            openRows.withUnsafeMutableBufferPointer { rows in
                for index in (last - parameters.windowsPerEvent + 1)...last {
                    rows[slot(id, index, parameters)] = PauliZRow(windowStart: index * parameters.hop, key: id)
                }
            }
        } else {
            effective = max(time, state.lastTime)
            if effective > state.lastTime {
                last = window(of: effective, after: state, parameters)
                try advance(&state, id: id, to: effective, opening: last, parameters: parameters, openRows: &openRows, episodes: &episodes, finished: &finished)
            } else {
                last = state.lastWindow
            }
        }
        let sameTo = !isNew && state.lastTo.equals(to)
        let isFlip: Bool
        if !from.isEmpty {
            isFlip = !equal(to, from)
        } else {
            isFlip = !isNew && !sameTo
        }
        let chainBreak = !isNew && !from.isEmpty && !state.lastTo.equals(from)
        let seqGap = !isNew && epoch == state.lastEpoch && seq > state.lastSeq + 1
        let epochChange = !isNew && epoch > state.lastEpoch
        let clockRegression = !isNew && time < state.lastTime
        // The open rows are those of the windows containing `effective`.
        openRows.withUnsafeMutableBufferPointer { rows in
            for index in (last - parameters.windowsPerEvent + 1)...last {
                let at = slot(id, index, parameters)
                rows[at].events += 1
                if isFlip {
                    rows[at].flips += 1
                    if polarity > 0 { rows[at].up += 1 } else if polarity < 0 { rows[at].down += 1 }
                    if covered { rows[at].covered += 1 }
                }
                if chainBreak { rows[at].chainBreaks += 1 }
                if seqGap { rows[at].seqGaps += 1 }
                if epochChange { rows[at].epochChanges += 1 }
                if clockRegression { rows[at].clockRegressions += 1 }
            }
        }
        state.storm.arrive(effective, isFlip: isFlip, interval: parameters.stormInterval)
        if !sameTo { state.lastTo.assign(to) }
        state.lastEpoch = epoch
        state.lastSeq = seq
        state.lastTime = effective
        state.lastWindow = last
        state.polarity = polarity
    }

    /// The index of the last window containing `t` (not before the state's last event).
    @inline(__always)
    static func window(of t: Int64, after state: ResourceState, _ parameters: EngineParameters) -> Int64 {
        t < (state.lastWindow + 1) * parameters.hop ? state.lastWindow : floorDivide(t, parameters.hop)
    }

    /// Where resource `id`'s row of window `index` lives in `openRows`.
    @inline(__always)
    static func slot(_ id: Int32, _ index: Int64, _ parameters: EngineParameters) -> Int {
        let k = parameters.windowsPerEvent
        if k == 1 { return Int(id) }
        var offset = index % k
        if offset < 0 { offset += k }
        return Int(Int64(id) * k + offset)
    }

    /// Moves a resource's timeline from its last event at `a` to `t` (a later event's
    /// effective time, or the horizon): closes the last instant for storms, lets flips
    /// leave, adds [a, t) to the open rows, finishes the rows that end by `t`, and opens
    /// the rows of the windows containing `t` that were not open, up to window index
    /// `opening` (the last window containing `t`), with their part of [a, t). At the
    /// horizon (`opening` nil: no event there) every row is finished and none opened.
    static func advance(
        _ state: inout ResourceState, id: Int32, to t: Int64, opening: Int64?,
        parameters: EngineParameters, openRows: inout [PauliZRow], episodes: inout [PauliZEpisode], finished: inout [PauliZRow]
    ) throws(PauliZError) {
        let a = state.lastTime
        let window = parameters.window
        let hop = parameters.hop
        let horizon = opening == nil
        if let ended = state.storm.closeInstant(resource: id, enter: parameters.stormEnter, exit: parameters.stormExit) { episodes.append(ended) }
        let stormAtA = state.storm.inStorm
        let ended = state.storm.dropsBefore(t, inclusive: horizon, interval: parameters.stormInterval, exit: parameters.stormExit, resource: id)
        if let ended { episodes.append(ended) }
        let stormUntil = stormAtA ? (ended?.end ?? t) : a
        let polarity = Int64(state.polarity)
        let lastAtA = state.lastWindow
        openRows.withUnsafeMutableBufferPointer { rows in
            @inline(__always)
            func accrue(_ at: Int) {
                let start = rows[at].windowStart
                let lo = max(a, start)
                let hi = min(t, start + window)
                if hi > lo {
                    rows[at].knownMilliseconds += hi - lo
                    rows[at].integral += polarity * (hi - lo)
                }
                let stormHi = min(stormUntil, start + window)
                if stormHi > lo { rows[at].stormMilliseconds += stormHi - lo }
            }
            // The windows open since `a`, oldest first.
            for index in (lastAtA - parameters.windowsPerEvent + 1)...lastAtA {
                let at = slot(id, index, parameters)
                accrue(at)
                if horizon || rows[at].windowStart + window <= t { emit(rows[at], parameters: parameters, finished: &finished) }
            }
            guard let lastAtT = opening else { return }
            // The windows that contain `t` but not `a`: their slots were freed above.
            let firstNew = max(lastAtA + 1, lastAtT - parameters.windowsPerEvent + 1)
            guard firstNew <= lastAtT else { return }
            for index in firstNew...lastAtT {
                let at = slot(id, index, parameters)
                rows[at] = PauliZRow(windowStart: index * hop, key: id)
                accrue(at)
            }
        }
    }

    @inline(__always)
    static func emit(_ row: PauliZRow, parameters: EngineParameters, finished: inout [PauliZRow]) {
        if let from = parameters.from, row.windowStart < from { return }
        if let to = parameters.to, row.windowStart >= to { return }
        finished.append(row)
    }

    mutating func finish(query: PauliZQuery, horizon: Int64?) throws(PauliZError) -> PauliZResult {
        if let horizon { observe(time: horizon) }
        guard let hz = largestTime else {
            sorter.keep(finished)
            return PauliZResult(query: query, resources: resources, horizon: nil, rows: sorter, episodes: [])
        }
        for index in states.indices {
            let id = Int32(index)
            try Self.advance(&states[index], id: id, to: hz, opening: nil, parameters: parameters, openRows: &openRows, episodes: &episodes, finished: &finished)
            if let open = states[index].storm.openEpisode(resource: id) { episodes.append(open) }
            if finished.count >= chunkRows { try handOver() }
        }
        states.removeAll()
        openRows.removeAll()
        sorter.keep(finished)
        finished = []
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
    /// Which resources' rows to give (a live answer's filter); nil for all.
    var keep: ((Int32) -> Bool)? = nil

    /// Calls `body` with each row in order.
    public func forEachRow(_ body: (PauliZRow) throws -> Void) throws {
        if let keep {
            try rows.drain(resources: resources) { row in if keep(row.key) { try body(row) } }
        } else {
            try rows.drain(resources: resources, body)
        }
    }

    public func name(of id: Int32) -> String { resources.string(id) }
}
