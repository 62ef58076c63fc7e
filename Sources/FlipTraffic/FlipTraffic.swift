#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import LogFormat
import LogSimulation

/// Seeded, realistic flip traffic for N resources over a span of days, generated hour by
/// hour in arrival order (what a flip topic's log would hold), for the traffic tool, the
/// Pauli-Z benchmark and tests.
///
/// Five kinds of resource, each with its own states and habits:
/// - leader elections (`.../leader`): node-1 to node-5; thrash during elections;
/// - database roles (`.../role`): primary (+1) and replica (-1), failover storms;
/// - feature flags (`.../flags/NAME`): on (+1) and off (-1), the same flag oscillating in
///   every region at once;
/// - autoscalers (`.../autoscaler`): scaled-up (+1) and scaled-down (-1), flapping;
/// - secrets (`.../secrets/NAME`): active (+1) and rotating (0), rotated on a schedule.
///
/// Every resource reports its state now and then (readouts), flips now and then on its
/// own, and has episodes of rapid flips (storms): most of its events come in those. Emitters are imperfect: each has a clock
/// skew and jitter, and some events come with a clock step back (clock regressions), some
/// are lost (seq gaps, and chain breaks when the next names its `from`), processes restart
/// (epoch changes), and a few events are sent twice (replays, which a flip topic refuses).
public struct FlipTraffic {
    public struct Configuration: Sendable {
        public var resources = 10_000
        public var days = 60
        /// Events to generate in all, replays not counted (the span ends when they are
        /// reached, or at its end).
        public var events: Int64 = 50_000_000
        public var start: Int64 = 1_767_225_600_000  // 2026-01-01T00:00:00Z
        public var seed: UInt64 = 1
        public var clockSkewMillisecondsMax: Int64 = 2_000
        public var lossRate = 0.002
        public var restartRate = 0.0005
        public var replayRate = 0.0002
        public var regressionRate = 0.001

        public init() {}
    }

    /// One generated event; `isReplay` marks a copy of an earlier event (same epoch and seq).
    public struct Generated: Sendable {
        public var event: FlipEvent
        public var isReplay: Bool
    }

    /// The polarity map that fits the traffic's states.
    public static let polarityMap: [String: Int8] = [
        "primary": 1, "replica": -1, "on": 1, "off": -1, "scaled-up": 1, "scaled-down": -1, "active": 1, "rotating": 0,
    ]

    enum Kind: Int, CaseIterable {
        case leader, role, flag, autoscaler, secret

        var states: [String] {
            switch self {
            case .leader: return ["node-1", "node-2", "node-3", "node-4", "node-5"]
            case .role: return ["primary", "replica"]
            case .flag: return ["on", "off"]
            case .autoscaler: return ["scaled-up", "scaled-down"]
            case .secret: return ["active", "rotating"]
            }
        }

        var actors: [String] {
            switch self {
            case .leader: return ["raft", "operator"]
            case .role: return ["patroni", "operator"]
            case .flag: return ["flagd", "deploy-bot", "alice"]
            case .autoscaler: return ["hpa", "karpenter"]
            case .secret: return ["vault"]
            }
        }

        var reasons: [String] {
            switch self {
            case .leader: return ["lease-expired", "election", "node-drain"]
            case .role: return ["failover", "switchover", "health-check"]
            case .flag: return ["rollout", "rollback", "experiment"]
            case .autoscaler: return ["cpu-high", "cpu-low", "queue-depth"]
            case .secret: return ["scheduled-rotation", "revoked"]
            }
        }
    }

    struct Resource {
        var name: String
        var kind: Kind
        var state: Int
        var epoch: Int64
        var seq: Int64 = 0
        var skew: Int64
        var nextReadout: Int64
        var nextFlip: Int64
        var nextEpisode: Int64
        var episodeEnd: Int64 = Int64.min
        var episodeGap: Int64 = 0
        var nextEpisodeFlip: Int64 = Int64.max
        var lastTime: Int64 = Int64.min
        var last: FlipEvent?
    }

    public let configuration: Configuration
    private var random: SplitMix64
    private var resources: [Resource] = []
    private var hour: Int64 = 0
    public private(set) var generated: Int64 = 0
    private let end: Int64
    private let readoutGap: Int64
    private let flipGap: Int64
    private let episodeGap: Int64

    static let hourMilliseconds: Int64 = 3_600_000

    public init(_ configuration: Configuration) {
        self.configuration = configuration
        random = SplitMix64(seed: configuration.seed)
        end = configuration.start + Int64(configuration.days) * 86_400_000
        let span = Double(Int64(configuration.days) * 86_400_000)
        let perResource = Double(configuration.events) / Double(max(configuration.resources, 1))
        // About 3% of the events are readouts, 3% lone flips, the rest in episodes of
        // rapid flips (0.5 to 5 s apart, for 1 to 10 minutes: about 120 flips), fast
        // enough to be storms by the spec's default parameters (5 flips in 60 s).
        readoutGap = Int64(span / max(perResource * 0.03, 1))
        flipGap = Int64(span / max(perResource * 0.03, 1))
        episodeGap = Int64(span / max(perResource * 0.94 / 120, 0.5))
        let regions = ["eu-1", "eu-2", "us-1", "us-2", "ap-1"]
        let services = ["payments", "checkout", "search", "auth", "ledger", "orders", "billing", "catalog"]
        for index in 0..<configuration.resources {
            let kind = Kind(rawValue: index % Kind.allCases.count)!
            let region = regions[(index / Kind.allCases.count) % regions.count]
            let group = index / (Kind.allCases.count * regions.count)
            let service = services[group % services.count] + (group >= services.count ? "-\(group / services.count)" : "")
            let name: String
            switch kind {
            case .leader: name = "prod/\(region)/\(service)/leader"
            case .role: name = "prod/\(region)/\(service)/db/role"
            case .flag: name = "prod/\(region)/flags/\(service)-new-ui"
            case .autoscaler: name = "prod/\(region)/\(service)/autoscaler"
            case .secret: name = "prod/\(region)/secrets/\(service)-db-password"
            }
            let start = configuration.start
            resources.append(Resource(
                name: name, kind: kind, state: 0, epoch: 1, skew: Int64(random.below(Int(2 * configuration.clockSkewMillisecondsMax + 1))) - configuration.clockSkewMillisecondsMax,
                nextReadout: start + Int64(random.below(Int(readoutGap))), nextFlip: start + exponential(flipGap),
                nextEpisode: start + exponential(episodeGap)))
        }
        // Feature flags oscillate in every region at once: a flag's episodes share a start.
        for index in resources.indices where resources[index].kind == .flag {
            let twin = index % (Kind.allCases.count * regions.count)
            resources[index].nextEpisode = resources[twin].nextEpisode + Int64(random.below(30_000))
        }
    }

    private mutating func exponential(_ mean: Int64) -> Int64 {
        let u = Double(random.next() >> 11) / Double(1 << 53)
        return Int64(-Double(mean) * log1p(-u * 0.999_999)) + 1
    }

    /// The next hour of traffic in arrival order; nil when done.
    public mutating func nextHour() -> [Generated]? {
        let from = configuration.start + hour * Self.hourMilliseconds
        guard from < end, generated < configuration.events else { return nil }
        hour += 1
        let to = min(from + Self.hourMilliseconds, end)
        var batch: [(arrival: Int64, order: Int, item: Generated)] = []
        for index in resources.indices {
            var resource = resources[index]
            emit(&resource, until: to, into: &batch)
            resources[index] = resource
        }
        batch.sort { $0.arrival != $1.arrival ? $0.arrival < $1.arrival : $0.order < $1.order }
        // Replays are extra sends, not events of the log: only originals count.
        var result: [Generated] = []
        result.reserveCapacity(batch.count)
        for entry in batch {
            if !entry.item.isReplay {
                if generated == configuration.events { break }
                generated += 1
            }
            result.append(entry.item)
        }
        return result
    }

    private mutating func emit(_ resource: inout Resource, until to: Int64, into batch: inout [(arrival: Int64, order: Int, item: Generated)]) {
        while true {
            // The earliest of the resource's next readout, lone flip, episode start or episode flip.
            let next = min(resource.nextReadout, resource.nextFlip, resource.nextEpisode, resource.nextEpisodeFlip)
            guard next < to else { return }
            if next == resource.nextEpisode {
                resource.episodeEnd = next + 60_000 + Int64(random.below(540_000))
                resource.episodeGap = 500 + Int64(random.below(4_500))
                resource.nextEpisodeFlip = next
                resource.nextEpisode = next + exponential(episodeGap)
                continue
            }
            var isFlip = true
            if next == resource.nextReadout {
                resource.nextReadout = next + readoutGap / 2 + Int64(random.below(Int(max(readoutGap, 1))))
                isFlip = false
            } else if next == resource.nextFlip {
                resource.nextFlip = next + exponential(flipGap)
            } else {
                let gap = resource.episodeGap / 2 + Int64(random.below(Int(resource.episodeGap)))
                resource.nextEpisodeFlip = next + gap < resource.episodeEnd ? next + gap : Int64.max
            }
            produce(&resource, at: next, isFlip: isFlip, into: &batch)
        }
    }

    private mutating func produce(_ resource: inout Resource, at arrival: Int64, isFlip: Bool, into batch: inout [(arrival: Int64, order: Int, item: Generated)]) {
        let states = resource.kind.states
        let before = states[resource.state]
        if isFlip {
            var next = random.below(states.count - 1)
            if next >= resource.state { next += 1 }
            resource.state = next
        }
        if random.chance(configuration.restartRate) {
            resource.epoch += 1
            resource.seq = 0
        } else {
            resource.seq += random.chance(configuration.lossRate) ? 2 + Int64(random.below(4)) : 1
        }
        var time = arrival + resource.skew + Int64(random.below(101)) - 50
        if random.chance(configuration.regressionRate) { time -= 5_000 + Int64(random.below(55_000)) }
        let explicitFrom = isFlip && random.below(2) == 0
        let caused = isFlip && random.below(5) != 0
        let event = FlipEvent(
            resource: resource.name, from: explicitFrom ? before : "", to: states[resource.state], polarity: nil,
            actor: caused ? resource.kind.actors[random.below(resource.kind.actors.count)] : "",
            reason: caused ? resource.kind.reasons[random.below(resource.kind.reasons.count)] : "",
            epoch: resource.epoch, seq: resource.seq, time: time)
        batch.append((arrival, batch.count, Generated(event: event, isReplay: false)))
        if let last = resource.last, random.chance(configuration.replayRate) {
            batch.append((arrival + 1, batch.count, Generated(event: last, isReplay: true)))
        }
        resource.last = event
    }
}

extension SplitMix64 {
    mutating func below(_ n: Int) -> Int { n <= 1 ? 0 : Int(next() % UInt64(n)) }

    mutating func chance(_ p: Double) -> Bool { Double(next() >> 11) / Double(1 << 53) < p }
}
