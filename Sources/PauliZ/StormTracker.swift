import DequeModule

/// One storm episode of one resource (spec section 6). `end` is nil while open (an end
/// after the horizon is not known yet).
public struct PauliZEpisode: Sendable, Equatable {
    public var resource: Int32
    public var start: Int64
    public var end: Int64?
    public var flips: Int64
    public var peak: Int64

    public init(resource: Int32, start: Int64, end: Int64?, flips: Int64, peak: Int64) {
        self.resource = resource
        self.start = start
        self.end = end
        self.flips = flips
        self.peak = peak
    }
}

/// The storm state machine of one resource, fed instants in increasing effective time.
///
/// `count(t)` is the number of flips in `(t - S, t]`. It rises at flip instants and falls
/// only at instants `f + S`. The tracker keeps the flips of the last S, and evaluates the
/// rules of section 6 once per instant, after every event at that instant has arrived
/// ("flips at the same instant count as arriving at it"): `closeInstant` for an instant
/// with events, `dropsBefore` for the instants between events where only flips leave.
struct StormTracker {
    private var flips = Deque<Int64>()
    private var instant: Int64 = 0
    private var instantOpen = false
    private var flipsAtInstant: Int64 = 0
    private(set) var inStorm = false
    private var start: Int64 = 0
    private var peak: Int64 = 0
    private var episodeFlips: Int64 = 0

    /// An event at effective time `t` (not before the last instant; the caller closes the
    /// previous instant first when `t` is later).
    mutating func arrive(_ t: Int64, isFlip: Bool, interval: Int64) {
        if !instantOpen || t != instant {
            while let first = flips.first, first + interval <= t { flips.removeFirst() }
            instant = t
            instantOpen = true
            flipsAtInstant = 0
        }
        if isFlip {
            flips.append(t)
            flipsAtInstant += 1
        }
    }

    /// Applies the rules at the open instant, with every flip of that instant counted.
    /// Returns the episode that ended at it, if one did.
    mutating func closeInstant(resource: Int32, enter: Int, exit: Int) -> PauliZEpisode? {
        guard instantOpen else { return nil }
        instantOpen = false
        let count = Int64(flips.count)
        if inStorm {
            if instant > start && count <= Int64(exit) { return end(at: instant, resource: resource) }
            if instant > start { episodeFlips += flipsAtInstant }
            peak = max(peak, count)
        } else if flipsAtInstant > 0 && count >= Int64(enter) {
            inStorm = true
            start = instant
            peak = count
            episodeFlips = count
        }
        return nil
    }

    /// Lets flips leave at the instants `f + S` before `t` (up to and including `t` when
    /// `inclusive`, for the horizon); an episode ends at the first such instant where the
    /// count is at most the exit threshold. No episode starts between events.
    mutating func dropsBefore(_ t: Int64, inclusive: Bool, interval: Int64, exit: Int, resource: Int32) -> PauliZEpisode? {
        var ended: PauliZEpisode?
        while let first = flips.first, inclusive ? first + interval <= t : first + interval < t {
            let instant = first + interval
            while let next = flips.first, next + interval == instant { flips.removeFirst() }
            if inStorm && instant > start && flips.count <= exit { ended = end(at: instant, resource: resource) }
        }
        return ended
    }

    /// The episode still going on at the horizon, if any.
    func openEpisode(resource: Int32) -> PauliZEpisode? {
        inStorm ? PauliZEpisode(resource: resource, start: start, end: nil, flips: episodeFlips, peak: peak) : nil
    }

    private mutating func end(at instant: Int64, resource: Int32) -> PauliZEpisode {
        inStorm = false
        return PauliZEpisode(resource: resource, start: start, end: instant, flips: episodeFlips, peak: peak)
    }
}
