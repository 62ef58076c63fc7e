import LogIO
import Synchronization

/// SplitMix64: a small, fast, seedable generator. Every random choice of a simulation comes
/// from one of these, so a seed replays a run exactly.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public private(set) var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A wall clock the test sets and moves, forward or back.
public final class SimulatedClock: WallClock {
    private let now: Atomic<Int64>

    public init(milliseconds: Int64 = 1_764_000_000_000) { now = Atomic(milliseconds) }

    public func nowMilliseconds() -> Int64 { now.load(ordering: .relaxed) }

    public func advance(by milliseconds: Int64) { now.add(milliseconds, ordering: .relaxed) }

    public func set(_ milliseconds: Int64) { now.store(milliseconds, ordering: .relaxed) }
}

/// An executor that runs nothing until the test says so: jobs wait in order, and
/// `runNext` runs the oldest on the caller's thread. With it, a partition's writer steps
/// only when the simulation decides, so crashes land between any two steps.
public final class ManualExecutor: BlockingExecutor {
    private let jobs = Mutex<[@Sendable () -> Void]>([])

    public init() {}

    public func execute(_ job: @escaping @Sendable () -> Void) {
        jobs.withLock { $0.append(job) }
    }

    public var pendingCount: Int { jobs.withLock { $0.count } }

    /// Runs the oldest waiting job; false when there was none.
    @discardableResult
    public func runNext() -> Bool {
        let job = jobs.withLock { $0.isEmpty ? nil : $0.removeFirst() }
        guard let job else { return false }
        job()
        return true
    }

    /// Runs jobs (including those they schedule) until none is left or `limit` ran.
    public func runAll(limit: Int = 1_000_000) {
        var count = 0
        while count < limit && runNext() { count += 1 }
        precondition(count < limit, "ManualExecutor.runAll ran \(limit) jobs without the queue emptying")
    }

    /// Forgets waiting jobs (the process they belonged to crashed).
    public func dropAll() { jobs.withLock { $0.removeAll() } }
}
