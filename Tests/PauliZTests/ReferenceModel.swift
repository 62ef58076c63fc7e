import LogFormat
import PauliZ

/// A second, deliberately naive reading of Docs/spec/pauli-z.md, written straight from the
/// text: whole-history arrays, every window by direct counting, storms by evaluating
/// count(u) at every instant where it can change. Slow; for comparing on small inputs.
enum ReferenceModel {
    struct Event {
        var t: Int64
        var time: Int64
        var isFlip: Bool
        var polarity: Int64
        var covered: Bool
        var chainBreak: Bool
        var seqGap: Bool
        var epochChange: Bool
        var clockRegression: Bool
    }

    static func run(_ events: [FlipEvent], _ query: PauliZQuery) -> (rows: [String], storms: [String]) {
        guard let hz = events.map(\.time).max() else { return ([], []) }
        var byResource: [String: [FlipEvent]] = [:]
        for event in events { byResource[event.resource, default: []].append(event) }
        let w = query.windowMilliseconds, h = query.hopMilliseconds, s = query.storm.intervalMilliseconds
        var rows: [(Int64, [UInt8], String)] = []
        var storms: [(Int64, [UInt8], String)] = []
        for (resource, list) in byResource {
            // Section 1 and 3, event by event.
            var derived: [Event] = []
            for (i, e) in list.enumerated() {
                let previous = i > 0 ? list[i - 1] : nil
                let previousT = i > 0 ? derived[i - 1].t : Int64.min
                let t = i == 0 ? e.time : max(e.time, previousT)
                let before = !e.from.isEmpty ? e.from : (previous?.to ?? e.to)
                let polarity = Int64(e.polarity ?? query.polarityMap[e.to] ?? 0)
                derived.append(Event(
                    t: t, time: e.time, isFlip: e.to != before, polarity: polarity, covered: !e.actor.isEmpty && !e.reason.isEmpty,
                    chainBreak: previous != nil && !e.from.isEmpty && e.from != previous!.to,
                    seqGap: previous != nil && e.epoch == previous!.epoch && e.seq > previous!.seq + 1,
                    epochChange: previous != nil && e.epoch > previous!.epoch,
                    clockRegression: previous != nil && e.time < previousT))
            }
            // Section 6: count(u) at every flip instant and every t + S, up to Hz.
            let flipTimes = derived.filter(\.isFlip).map(\.t)
            func count(_ u: Int64) -> Int64 { Int64(flipTimes.filter { $0 > u - s && $0 <= u }.count) }
            let instants = Set(flipTimes + flipTimes.map { $0 + s }).filter { $0 <= hz }.sorted()
            var episodes: [(start: Int64, end: Int64?, flips: Int64, peak: Int64)] = []
            var start: Int64?
            for u in instants {
                let c = count(u)
                if let open = start {
                    if u > open && c <= Int64(query.storm.exit) {
                        episodes.append((open, u, 0, 0))
                        start = nil
                    }
                } else if flipTimes.contains(u) && c >= Int64(query.storm.enter) {
                    start = u
                }
            }
            if let open = start { episodes.append((open, nil, 0, 0)) }
            for index in episodes.indices {
                let e = episodes[index]
                let last = e.end ?? hz
                episodes[index].flips = Int64(flipTimes.filter { $0 > e.start - s && (e.end == nil ? $0 <= hz : $0 < last) }.count)
                episodes[index].peak = instants.filter { $0 >= e.start && (e.end == nil ? $0 <= hz : $0 < last) }.map(count).max() ?? 0
                let text = "{\"resource\":\(StrictJSON.quote(resource)),\"start\":\(e.start),\"end\":\(e.end.map(String.init) ?? "null"),\"flips\":\(episodes[index].flips),\"peak\":\(episodes[index].peak)}"
                let selected = (query.to.map { e.start < $0 } ?? true) && (e.end == nil || (query.from.map { e.end! > $0 } ?? true))
                if selected { storms.append((e.start, Array(resource.utf8), text)) }
            }
            // Section 4 and 5: every window with an event.
            var starts = Set<Int64>()
            for e in derived {
                var start = floorDiv(e.t, h) * h
                while start > e.t - w {
                    starts.insert(start)
                    start -= h
                }
            }
            for start in starts.sorted() {
                if let from = query.from, start < from { continue }
                if let to = query.to, start >= to { continue }
                let end = start + w
                var row = PauliZRow(windowStart: start, key: 0)
                for e in derived where e.t >= start && e.t < end {
                    row.events += 1
                    if e.isFlip {
                        row.flips += 1
                        if e.polarity > 0 { row.up += 1 }
                        if e.polarity < 0 { row.down += 1 }
                        if e.covered { row.covered += 1 }
                    }
                    if e.chainBreak { row.chainBreaks += 1 }
                    if e.seqGap { row.seqGaps += 1 }
                    if e.epochChange { row.epochChanges += 1 }
                    if e.clockRegression { row.clockRegressions += 1 }
                }
                func overlap(_ a: Int64, _ b: Int64) -> Int64 { max(0, min(b, end, hz) - max(a, start)) }
                row.knownMilliseconds = overlap(derived[0].t, hz)
                for (i, e) in derived.enumerated() {
                    let next = i + 1 < derived.count ? derived[i + 1].t : hz
                    row.integral += e.polarity * overlap(e.t, next)
                }
                for e in episodes { row.stormMilliseconds += overlap(e.start, e.end ?? hz) }
                rows.append((start, Array(resource.utf8), PauliZOutput.rowLine(.jsonl, keyName: "resource", key: resource, row: row, windowMilliseconds: w)))
            }
        }
        func ordered(_ a: (Int64, [UInt8], String), _ b: (Int64, [UInt8], String)) -> Bool {
            a.0 != b.0 ? a.0 < b.0 : a.1.lexicographicallyPrecedes(b.1)
        }
        return (rows.sorted(by: ordered).map(\.2), storms.sorted(by: ordered).map(\.2))
    }

    static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 {
        let q = a / b
        return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
    }
}

/// Seeded random flip traffic for property tests: a few resources, three states, clock
/// regressions, missing events (seq gaps), epoch restarts, chain breaks, absent polarities.
struct SmallTraffic {
    var state: UInt64

    init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }

    mutating func events(count: Int) -> [FlipEvent] {
        let resources = ["a/x", "a/y", "b", "a/x/z"]
        let states = ["on", "off", "mid"]
        var clocks = [Int64](repeating: Int64(below(20)) - 10, count: resources.count)
        var epochs = [Int64](repeating: 0, count: resources.count)
        var seqs = [Int64](repeating: 0, count: resources.count)
        var events: [FlipEvent] = []
        for _ in 0..<count {
            let r = below(resources.count)
            clocks[r] += Int64(below(4) == 0 ? -below(8) : below(9))
            if below(10) == 0 {
                epochs[r] += 1
                seqs[r] = 0
            } else {
                seqs[r] += Int64(below(6) == 0 ? 2 + below(3) : 1)
            }
            let polarity: Int8? = below(3) == 0 ? nil : Int8(below(3) - 1)
            events.append(FlipEvent(
                resource: resources[r], from: below(3) == 0 ? states[below(3)] : "", to: states[below(3)], polarity: polarity,
                actor: below(2) == 0 ? "op" : "", reason: below(2) == 0 ? "why" : "", epoch: epochs[r], seq: seqs[r], time: clocks[r]))
        }
        return events
    }

    mutating func query() -> PauliZQuery {
        let hop = Int64([1, 2, 3, 5][below(4)])
        let window = hop * Int64(1 + below(4))
        let enter = 1 + below(4)
        let storm = StormParameters(intervalMilliseconds: Int64(1 + below(12)), enter: enter, exit: below(enter))
        let from: Int64? = below(3) == 0 ? Int64(below(20)) - 10 : nil
        let to: Int64? = below(3) == 0 ? (from ?? -20) + 1 + Int64(below(30)) : nil
        return PauliZQuery(windowMilliseconds: window, hopMilliseconds: hop, from: from, to: to, storm: storm, polarityMap: ["on": 1, "off": -1])
    }
}
