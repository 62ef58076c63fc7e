import Glibc
import Synchronization

/// Runs blocking file work (writes, fsyncs) on threads of its own: never on a network
/// event loop and never on the Swift concurrency pool, whose few threads an fdatasync
/// would stall (design decision 4).
public protocol BlockingExecutor: Sendable {
    func execute(_ job: @escaping @Sendable () -> Void)
}

/// A fixed set of dedicated POSIX threads taking jobs from one queue, first come first
/// served. Partition writers schedule one job at a time each, so a pool of N threads
/// lets N partitions sync at once (about 2.5 syncs overlap on this project's disks).
///
/// `jobs`, `head` and `stopping` are guarded by `mutex`; `condition` signals new jobs.
public final class IOThreadPool: BlockingExecutor, @unchecked Sendable {
    private var jobs: [@Sendable () -> Void] = []
    private var head = 0
    private var stopping = false
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    private let threadCount: Int
    private let finishedCount = Atomic<Int>(0)

    /// Starts `threadCount` threads.
    public init(threadCount: Int) {
        precondition(threadCount > 0, "a pool has at least one thread")
        self.threadCount = threadCount
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        condition = .allocate(capacity: 1)
        pthread_cond_init(condition, nil)
        for _ in 0..<threadCount { startDetachedThread { [self] in workerLoop() } }
    }

    public func execute(_ job: @escaping @Sendable () -> Void) {
        pthread_mutex_lock(mutex)
        precondition(!stopping, "IOThreadPool.execute after shutdown")
        jobs.append(job)
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
    }

    /// Lets queued jobs finish, then ends the threads and waits for them.
    public func shutdown() {
        pthread_mutex_lock(mutex)
        stopping = true
        pthread_cond_broadcast(condition)
        pthread_mutex_unlock(mutex)
        while finishedCount.load(ordering: .acquiring) < threadCount { usleep(500) }
    }

    fileprivate func workerLoop() {
        while let job = nextJob() { job() }
        finishedCount.add(1, ordering: .releasing)
    }

    /// The next job, waiting for one; nil once the pool stops and the queue is empty.
    private func nextJob() -> (@Sendable () -> Void)? {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while head == jobs.count {
            if stopping { return nil }
            pthread_cond_wait(condition, mutex)
        }
        let job = jobs[head]
        head += 1
        if head == jobs.count {
            jobs.removeAll(keepingCapacity: true)
            head = 0
        }
        return job
    }

    deinit {
        pthread_cond_destroy(condition)
        condition.deallocate()
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }
}

/// Runs `body` on a detached POSIX thread of its own: long blocking work that must hold
/// neither a thread of the Swift concurrency pool nor one of an I/O pool.
public func startDetachedThread(_ body: @escaping @Sendable () -> Void) {
    final class Start: @unchecked Sendable {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    let start = Unmanaged.passRetained(Start(body))
    var thread = pthread_t()
    let result = pthread_create(&thread, nil, { raw in
        Unmanaged<Start>.fromOpaque(raw!).takeRetainedValue().body()
        return nil
    }, start.toOpaque())
    precondition(result == 0, "pthread_create failed: \(result)")
    pthread_detach(thread)
}
