import LogFormat
import PauliZ

/// Runs the engine over events in the order given and returns the printed JSON lines of
/// the rows (or group rows) and episodes.
func runEngine(_ events: [FlipEvent], _ query: PauliZQuery, groupDepth: Int? = nil, rowsInMemoryMax: Int = 1 << 20, horizon: Int64? = nil) throws -> (rows: [String], storms: [String]) {
    let engine = try PauliZEngine(query: query, rowsInMemoryMax: rowsInMemoryMax)
    for event in events { try ingest(event, into: engine) }
    let result = try engine.finish(horizon: horizon)
    var rows: [String] = []
    if let groupDepth {
        var rollup = PauliZRollup(depth: groupDepth)
        let emit = { (key: String, row: PauliZRow) in
            rows.append(PauliZOutput.rowLine(.jsonl, keyName: "group", key: key, row: row, windowMilliseconds: query.windowMilliseconds))
        }
        try result.forEachRow { row in rollup.add(row, resources: result.resources, emit: emit) }
        rollup.flush(emit)
        return (rows, episodeLines(result))
    }
    return try printed(result)
}

/// A result's rows and episodes as JSON lines.
func printed(_ result: PauliZResult) throws -> (rows: [String], storms: [String]) {
    var rows: [String] = []
    try result.forEachRow { row in
        rows.append(PauliZOutput.rowLine(.jsonl, keyName: "resource", key: result.name(of: row.key), row: row, windowMilliseconds: result.query.windowMilliseconds))
    }
    return (rows, episodeLines(result))
}

func episodeLines(_ result: PauliZResult) -> [String] {
    result.episodes.map { PauliZOutput.episodeLine(.jsonl, resource: result.name(of: $0.resource), episode: $0) }
}

func ingest(_ event: FlipEvent, into engine: PauliZEngine) throws {
    var resource = event.resource, from = event.from, to = event.to
    try resource.withUTF8 { r in
        try from.withUTF8 { f in
            try to.withUTF8 { t in
                try engine.ingest(
                    resource: UnsafeRawBufferPointer(r), from: UnsafeRawBufferPointer(f), to: UnsafeRawBufferPointer(t),
                    polarity: event.polarity, hasActor: !event.actor.isEmpty, hasReason: !event.reason.isEmpty,
                    epoch: event.epoch, seq: event.seq, time: event.time)
            }
        }
    }
}

/// A row line as the spec's figures, for readable expectations.
func row(
    _ key: String, _ start: Int64, _ end: Int64, events: Int64, flips: Int64, up: Int64, down: Int64, rate: String,
    coverage: String, chainBreaks: Int64 = 0, seqGaps: Int64 = 0, epochChanges: Int64 = 0, clockRegressions: Int64 = 0,
    known: Int64, z: String, storm: Int64 = 0, keyName: String = "resource"
) -> String {
    "{\"\(keyName)\":\"\(key)\",\"window_start\":\(start),\"window_end\":\(end),\"events\":\(events),\"flips\":\(flips),\"up\":\(up),\"down\":\(down)"
        + ",\"net_polarity\":\(up - down),\"flip_rate_per_min\":\(rate),\"readouts\":\(events - flips),\"cause_coverage\":\(coverage)"
        + ",\"chain_breaks\":\(chainBreaks),\"seq_gaps\":\(seqGaps),\"epoch_changes\":\(epochChanges),\"clock_regressions\":\(clockRegressions)"
        + ",\"known_ms\":\(known),\"z_mean\":\(z),\"storm_ms\":\(storm)}"
}

func flip(_ resource: String, _ time: Int64, from: String = "", to: String, polarity: Int8? = nil, actor: String = "", reason: String = "", epoch: Int64 = 1, seq: Int64) -> FlipEvent {
    FlipEvent(resource: resource, from: from, to: to, polarity: polarity, actor: actor, reason: reason, epoch: epoch, seq: seq, time: time)
}
