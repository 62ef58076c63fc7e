import DequeModule
import LogFormat

/// What the group commit needs to know of a queued append: its size.
protocol GroupCommitItem {
    var byteCount: Int { get }
}

/// A partition writer's queue and its flags as one value: what is queued (in log order),
/// whether a writer turn is scheduled, whether the partition is closing or closed, and the
/// failure that turned it read-only. `PartitionLog` keeps it under its lock and carries out
/// what it answers (scheduling the writer, writing a group, refusing appends); it is tested
/// on its own (GroupCommitStateTests), without files or threads.
///
/// The rules: at most one writer turn is scheduled at a time; a failure is sticky and
/// empties the queue; closing lets the writer drain the queue first, then shut down once.
struct GroupCommit<Item: GroupCommitItem> {
    enum Lifecycle: Equatable {
        case open
        /// A close was asked for: the writer drains the queue, then shuts down.
        case closing
        case closed
    }

    /// The writer's next step.
    enum Step {
        /// Nothing to do: the writer's turn ends, and it is no longer scheduled.
        case idle
        /// Closing and nothing left to write: finish the close.
        case shutdown
        /// Write these appends (from the queue's front, in order) in one write call, after
        /// rolling the segment when `roll`.
        case group([Item], bytes: Int, roll: Bool)
    }

    /// What a close request needs done.
    enum CloseRequest: Equatable {
        /// Closed already: answer at once.
        case alreadyClosed
        /// Schedule the writer, which shuts down after draining the queue.
        case scheduleWriter
        /// A writer turn is scheduled or running and will see the close.
        case writerWillSee
    }

    let queuedBytesMax: Int
    let queuedCountMax: Int
    let groupCountMax: Int

    private(set) var queue = Deque<Item>()
    private(set) var queuedBytes = 0
    private(set) var writerScheduled = false
    private(set) var lifecycle = Lifecycle.open
    private(set) var failure: StorageError?

    init(queuedBytesMax: Int, queuedCountMax: Int, groupCountMax: Int = Limits.groupWriteAppendCountMax) {
        self.queuedBytesMax = queuedBytesMax
        self.queuedCountMax = queuedCountMax
        self.groupCountMax = groupCountMax
    }

    /// True once a close was asked for, or the partition failed: nothing new is waited for.
    var isStopping: Bool { lifecycle != .open || failure != nil }

    /// Why an append of `bytes` cannot be queued now (`name` names the partition in the
    /// message), or nil.
    func refusal(bytes: Int, name: @autoclosure () -> String) -> StorageError? {
        if let failure { return failure }
        if lifecycle != .open { return StorageError(.closed, "\(name()) is closed") }
        if queuedBytes + bytes > queuedBytesMax || queue.count >= queuedCountMax {
            return StorageError(.overloaded, "\(name()): the write queue holds \(queue.count) appends, \(queuedBytes) bytes (limits \(queuedCountMax), \(queuedBytesMax)); retry later")
        }
        return nil
    }

    /// Queues an append (after `refusal` said nil); true when the writer must be scheduled.
    mutating func enqueue(_ item: Item) -> Bool {
        precondition(lifecycle == .open && failure == nil, "an append queued on a partition that is not open")
        queue.append(item)
        queuedBytes += item.byteCount
        return scheduleIfIdle()
    }

    /// The writer's next step. `plan` gets the size of the append at the queue's front and
    /// answers whether the segment must roll first and how many bytes the group may take
    /// (what fits in the segment and the group-write limit). A failure hands back every
    /// queued append, to be refused with it.
    mutating func takeGroup(plan: (_ frontBytes: Int) -> (roll: Bool, budget: Int)) -> (step: Step, refused: [Item]) {
        if failure != nil {
            let refused = drain()
            if lifecycle == .closing { return (.shutdown, refused) }
            writerScheduled = false
            return (.idle, refused)
        }
        guard let first = queue.first else {
            if lifecycle == .closing { return (.shutdown, []) }
            writerScheduled = false
            return (.idle, [])
        }
        let (roll, budget) = plan(first.byteCount)
        var items: [Item] = []
        var bytes = 0
        while let next = queue.first, items.count < groupCountMax, items.isEmpty || bytes + next.byteCount <= budget {
            items.append(queue.removeFirst())
            bytes += next.byteCount
        }
        queuedBytes -= bytes
        return (.group(items, bytes: bytes, roll: roll), [])
    }

    /// After a group is written and synced: true when the writer goes on (more is queued,
    /// a close waits, or a failure must be handed out); false ends the turn.
    mutating func groupDone() -> Bool {
        if queue.isEmpty && lifecycle == .open && failure == nil {
            writerScheduled = false
            return false
        }
        return true
    }

    /// A write or fsync failed: the partition is read-only from now on (the first failure
    /// is kept). Returns everything queued, to be refused.
    mutating func fail(_ error: StorageError) -> [Item] {
        if failure == nil { failure = error }
        return drain()
    }

    /// Empties the queue; returns what it held, in order.
    private mutating func drain() -> [Item] {
        let items = Array(queue)
        queue.removeAll()
        queuedBytes = 0
        return items
    }

    mutating func requestClose() -> CloseRequest {
        switch lifecycle {
        case .closed: return .alreadyClosed
        case .closing: return .writerWillSee
        case .open:
            lifecycle = .closing
            return scheduleIfIdle() ? .scheduleWriter : .writerWillSee
        }
    }

    /// The writer finished the close.
    mutating func finishedClosing() {
        precondition(lifecycle == .closing, "a close finished that was not asked for")
        lifecycle = .closed
        writerScheduled = false
    }

    private mutating func scheduleIfIdle() -> Bool {
        if writerScheduled { return false }
        writerScheduled = true
        return true
    }
}
