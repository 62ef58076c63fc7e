import CThreads
import Glibc
import Synchronization

/// Runs blocking file work (writes, fsyncs) on threads of its own: never on a network
/// event loop and never on the Swift concurrency pool, whose few threads an fdatasync
/// would stall (design decision 4).
public protocol BlockingExecutor: Sendable {
    func execute(_ job: @escaping @Sendable () -> Void)
}

/// Dedicated POSIX threads taking jobs from one queue, first come first served.
///
/// Two uses, two shapes (Docs/design.md, "Threads"):
/// - **Writers** (`IOThreadPool(writersMax:)`): elastic. A thread is started whenever a job
///   arrives and no thread is idle, up to `threadCountMax`; a thread idle for
///   `idleMilliseconds` ends (down to `threadCountMin`). Partition writers schedule one job
///   at a time each, so up to `threadCountMax` active partitions never wait for a thread,
///   and idle partitions cost none.
/// - **Queries** (`IOThreadPool(threadCount:queuedMax:niceness:)`): a fixed number of
///   threads at a lower scheduling priority with a bounded queue: `submit` refuses a job
///   past `queuedMax` waiting ones (the caller answers `overloaded`), so reads and
///   analytics can neither pile up without bound nor take the CPU from writers.
///
/// `jobs`, `head`, the thread counts and `stopping` are guarded by `mutex`; `condition`
/// signals new jobs and the end of threads.
public final class IOThreadPool: BlockingExecutor, @unchecked Sendable {
    public let name: String
    public let threadCountMin: Int
    public let threadCountMax: Int
    /// Jobs that may wait for a thread; nil for no bound (writers: their count is bounded
    /// by the partitions).
    public let queuedMax: Int?
    public let niceness: Int32
    let idleMilliseconds: Int

    private var jobs: [@Sendable () -> Void] = []
    private var head = 0
    private var stopping = false
    private var threadCount = 0
    private var idleCount = 0
    private var runningCount = 0
    private var refusedTotal = 0
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    private let ended: UnsafeMutablePointer<pthread_cond_t>

    /// A fixed pool of `threadCount` threads, unbounded queue, normal priority.
    public convenience init(threadCount: Int, name: String = "lodestone-io") {
        self.init(name: name, threadCountMin: threadCount, threadCountMax: threadCount, queuedMax: nil, niceness: 0, idleMilliseconds: 0)
    }

    /// The writers' pool: grows to `writersMax` threads as partitions become active.
    public convenience init(writersMax: Int, idleMilliseconds: Int = 10_000) {
        self.init(name: "lodestone-writer", threadCountMin: 1, threadCountMax: writersMax, queuedMax: nil, niceness: 0, idleMilliseconds: idleMilliseconds)
    }

    /// A bounded pool: `threadCount` threads at `niceness`, at most `queuedMax` waiting jobs.
    public convenience init(threadCount: Int, queuedMax: Int, niceness: Int32, name: String) {
        self.init(name: name, threadCountMin: threadCount, threadCountMax: threadCount, queuedMax: queuedMax, niceness: niceness, idleMilliseconds: 0)
    }

    init(name: String, threadCountMin: Int, threadCountMax: Int, queuedMax: Int?, niceness: Int32, idleMilliseconds: Int) {
        precondition(threadCountMin >= 1 && threadCountMax >= threadCountMin, "a pool has at least one thread")
        precondition(queuedMax.map { $0 >= 0 } ?? true, "a queue bound is not negative")
        self.name = name
        self.threadCountMin = threadCountMin
        self.threadCountMax = threadCountMax
        self.queuedMax = queuedMax
        self.niceness = niceness
        self.idleMilliseconds = idleMilliseconds
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        condition = .allocate(capacity: 1)
        pthread_cond_init(condition, nil)
        ended = .allocate(capacity: 1)
        pthread_cond_init(ended, nil)
        pthread_mutex_lock(mutex)
        for _ in 0..<threadCountMin { startThread() }
        pthread_mutex_unlock(mutex)
    }

    /// Queues a job; never refuses (a bounded pool's caller should use `submit`).
    public func execute(_ job: @escaping @Sendable () -> Void) {
        pthread_mutex_lock(mutex)
        precondition(!stopping, "\(name): execute after shutdown")
        enqueue(job)
        pthread_mutex_unlock(mutex)
    }

    /// Queues a job unless `queuedMax` jobs already wait for a thread (or the pool is
    /// stopping): false then, and the job is not run.
    public func submit(_ job: @escaping @Sendable () -> Void) -> Bool {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        // Jobs not taken yet, beyond the threads free to take them, are the queue.
        let waiting = jobs.count - head
        let free = threadCount - runningCount
        if stopping || (queuedMax.map { waiting >= $0 + free } ?? false) {
            refusedTotal += 1
            return false
        }
        enqueue(job)
        return true
    }

    /// Under `mutex`.
    private func enqueue(_ job: @escaping @Sendable () -> Void) {
        jobs.append(job)
        if idleCount < jobs.count - head && threadCount < threadCountMax {
            startThread()
        } else {
            pthread_cond_signal(condition)
        }
    }

    /// What the pool is doing now, for health and tests.
    public struct Load: Sendable, Equatable {
        public var threads: Int
        public var running: Int
        public var queued: Int
        public var refusedTotal: Int
    }

    public var load: Load {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return Load(threads: threadCount, running: runningCount, queued: jobs.count - head, refusedTotal: refusedTotal)
    }

    /// Lets queued jobs finish (or, `droppingQueued`, drops those no thread has started),
    /// then ends the threads and waits for them. Returns the number of jobs dropped.
    @discardableResult
    public func shutdown(droppingQueued: Bool = false) -> Int {
        pthread_mutex_lock(mutex)
        stopping = true
        let dropped = droppingQueued ? jobs.count - head : 0
        if droppingQueued {
            jobs.removeAll()
            head = 0
        }
        pthread_cond_broadcast(condition)
        while threadCount > 0 { pthread_cond_wait(ended, mutex) }
        pthread_mutex_unlock(mutex)
        return dropped
    }

    /// Under `mutex`.
    private func startThread() {
        threadCount += 1
        let niceness = self.niceness
        let threadName = name
        startDetachedThread(name: threadName, niceness: niceness) { [self] in workerLoop() }
    }

    private func workerLoop() {
        while let job = nextJob() {
            job()
            pthread_mutex_lock(mutex)
            runningCount -= 1
            pthread_mutex_unlock(mutex)
        }
    }

    /// The next job, waiting for one; nil once the pool stops and the queue is empty, or
    /// when this thread was idle long enough to end (the thread is then counted out).
    private func nextJob() -> (@Sendable () -> Void)? {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while head == jobs.count {
            if stopping || !waitForJob() {
                threadCount -= 1
                pthread_cond_broadcast(ended)
                return nil
            }
        }
        let job = jobs[head]
        head += 1
        if head == jobs.count {
            jobs.removeAll(keepingCapacity: true)
            head = 0
        }
        runningCount += 1
        return job
    }

    /// Waits (under `mutex`) for a signal; false when an elastic pool's thread was idle for
    /// `idleMilliseconds` and may end.
    private func waitForJob() -> Bool {
        idleCount += 1
        defer { idleCount -= 1 }
        guard threadCount > threadCountMin, idleMilliseconds > 0 else {
            pthread_cond_wait(condition, mutex)
            return true
        }
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let nanoseconds = Int(now.tv_nsec) + (idleMilliseconds % 1000) * 1_000_000
        var deadline = timespec(tv_sec: now.tv_sec + idleMilliseconds / 1000 + nanoseconds / 1_000_000_000, tv_nsec: nanoseconds % 1_000_000_000)
        let result = pthread_cond_timedwait(condition, mutex, &deadline)
        return !(result == ETIMEDOUT && head == jobs.count && threadCount > threadCountMin)
    }

    deinit {
        pthread_cond_destroy(ended)
        ended.deallocate()
        pthread_cond_destroy(condition)
        condition.deallocate()
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }
}

/// The calling thread's niceness (tests of the pools).
public func currentThreadNiceness() -> Int32 { lodestone_thread_niceness() }

/// Runs `body` on a detached POSIX thread of its own: long blocking work that must hold
/// neither a thread of the Swift concurrency pool nor one of an I/O pool. `name` shows in
/// `top -H` and debuggers (15 bytes at most are kept); a positive `niceness` lowers the
/// thread's scheduling priority (Linux sets it per thread), so that it yields the CPU to
/// writers and event loops.
public func startDetachedThread(name: String? = nil, niceness: Int32 = 0, _ body: @escaping @Sendable () -> Void) {
    final class Start: @unchecked Sendable {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    let start = Unmanaged.passRetained(Start({
        if let name { _ = lodestone_set_thread_name(name) }
        if niceness != 0 { _ = lodestone_set_thread_niceness(niceness) }
        body()
    }))
    var thread = pthread_t()
    let result = pthread_create(&thread, nil, { raw in
        Unmanaged<Start>.fromOpaque(raw!).takeRetainedValue().body()
        return nil
    }, start.toOpaque())
    precondition(result == 0, "pthread_create failed: \(result)")
    pthread_detach(thread)
}

/// Wakes one waiting thread: `signal` is remembered until the next `wait` returns, so a
/// signal sent while the waiter works is not lost. `signal` never waits for the waiter
/// (it takes the mutex only to set a flag).
public final class ThreadSignal: @unchecked Sendable {
    private var signaled = false
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>

    public init() {
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        condition = .allocate(capacity: 1)
        pthread_cond_init(condition, nil)
    }

    public func signal() {
        pthread_mutex_lock(mutex)
        signaled = true
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
    }

    /// Returns at the next signal (at once if one came since the last return) or after
    /// `milliseconds`.
    public func wait(milliseconds: Int) {
        pthread_mutex_lock(mutex)
        if !signaled {
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            let nanoseconds = Int(now.tv_nsec) + (milliseconds % 1000) * 1_000_000
            var deadline = timespec(tv_sec: now.tv_sec + milliseconds / 1000 + nanoseconds / 1_000_000_000, tv_nsec: nanoseconds % 1_000_000_000)
            _ = pthread_cond_timedwait(condition, mutex, &deadline)
        }
        signaled = false
        pthread_mutex_unlock(mutex)
    }

    deinit {
        pthread_cond_destroy(condition)
        condition.deallocate()
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }
}
