/// The figures of one resource (or group) in one window, as integers (spec section 5).
/// Ratios (flip_rate_per_min, cause_coverage, z_mean) are computed from these when
/// printed, each rounded once; `integral` is the polarity integral over the known part,
/// in polarity-milliseconds, kept so rollups can sum it exactly.
public struct PauliZRow: Sendable, Equatable {
    public var windowStart: Int64
    /// The resource's id in the engine's table (or a group's, in rollups).
    public var key: Int32
    public var events: Int64 = 0
    public var flips: Int64 = 0
    public var up: Int64 = 0
    public var down: Int64 = 0
    /// Flips with a non-empty actor and a non-empty reason.
    public var covered: Int64 = 0
    public var chainBreaks: Int64 = 0
    public var seqGaps: Int64 = 0
    public var epochChanges: Int64 = 0
    public var clockRegressions: Int64 = 0
    public var knownMilliseconds: Int64 = 0
    public var integral: Int64 = 0
    public var stormMilliseconds: Int64 = 0

    public init(windowStart: Int64, key: Int32) {
        self.windowStart = windowStart
        self.key = key
    }

    public var netPolarity: Int64 { up - down }
    public var readouts: Int64 { events - flips }

    public func flipRatePerMinute(windowMilliseconds: Int64) -> Double {
        exactRatio(Int128(flips) * 60_000, Int128(windowMilliseconds))
    }

    public var causeCoverage: Double? { flips == 0 ? nil : exactRatio(Int128(covered), Int128(flips)) }

    public var zMean: Double? { knownMilliseconds == 0 ? nil : exactRatio(Int128(integral), Int128(knownMilliseconds)) }

    /// Adds another row's figures (rollups, section 7).
    public mutating func add(_ other: PauliZRow) {
        events += other.events
        flips += other.flips
        up += other.up
        down += other.down
        covered += other.covered
        chainBreaks += other.chainBreaks
        seqGaps += other.seqGaps
        epochChanges += other.epochChanges
        clockRegressions += other.clockRegressions
        knownMilliseconds += other.knownMilliseconds
        integral += other.integral
        stormMilliseconds += other.stormMilliseconds
    }
}
