import DequeModule
import Synchronization

/// Where partition writers hand durable batches to a consumer on another thread (the
/// server's live Pauli-Z ingest), without ever waiting for it.
///
/// The contract that a durable-batch observer "must be quick" is this type: `offer` only
/// appends to a queue or, past `bytesMax` queued bytes, drops the queue and marks it
/// overflowed; the lock it takes is held by the consumer only to swap the queue out
/// (`take`) or to clear it (`reset`), never while it works. A consumer that falls behind
/// loses batches, not the writer's time: it sees `overflowed` and must rebuild what it
/// keeps from the log (the batches it lost are all there, durable).
///
/// Batches arrive in log order per partition, after the fsync that made them durable and
/// before their appends are acknowledged.
public final class DurableBatchFeed: Sendable {
    public struct Batch: Sendable {
        /// The partition's index in its topic.
        public var partition: Int
        /// The batch as stored.
        public var bytes: [UInt8]
    }

    public struct Taken: Sendable {
        public var batches: [Batch]
        /// Batches were dropped since the last `reset`: what the consumer keeps is stale.
        public var overflowed: Bool
    }

    private struct Queue {
        var batches = Deque<Batch>()
        var bytes = 0
        var overflowed = false
        var overflowCount = 0
    }

    public let bytesMax: Int
    private let queue = Mutex(Queue())
    /// Called after each offer, outside the lock, with the bytes queued then and whether the
    /// feed has overflowed (the consumer's wake-up, which may decide it is not needed yet);
    /// must not block.
    private let wake: @Sendable (_ queuedBytes: Int, _ overflowed: Bool) -> Void

    public init(bytesMax: Int, wake: @escaping @Sendable (_ queuedBytes: Int, _ overflowed: Bool) -> Void = { _, _ in }) {
        precondition(bytesMax > 0, "a feed holds some bytes")
        self.bytesMax = bytesMax
        self.wake = wake
    }

    /// The durable batches of one group write of `partition`, in log order, with one
    /// wake-up of the consumer (writer side). Never waits on the consumer.
    func offer(partition: Int, _ group: some Sequence<[UInt8]>) {
        let (queued, overflowed) = queue.withLock { queue -> (Int, Bool) in
            for bytes in group {
                if queue.overflowed { break }
                if queue.bytes + bytes.count > bytesMax {
                    queue.overflowed = true
                    queue.overflowCount += 1
                    queue.batches = Deque()
                    queue.bytes = 0
                    break
                }
                queue.batches.append(Batch(partition: partition, bytes: bytes))
                queue.bytes += bytes.count
            }
            return (queue.bytes, queue.overflowed)
        }
        wake(queued, overflowed)
    }

    /// Everything queued since the last take, in the order offered (consumer side).
    public func take() -> Taken {
        let (batches, overflowed) = queue.withLock { queue -> (Deque<Batch>, Bool) in
            defer {
                queue.batches = Deque()
                queue.bytes = 0
            }
            return (queue.batches, queue.overflowed)
        }
        return Taken(batches: Array(batches), overflowed: overflowed)
    }

    /// Forgets what is queued and the overflow (the consumer is about to read the log).
    public func reset() {
        queue.withLock { queue in
            queue.batches = Deque()
            queue.bytes = 0
            queue.overflowed = false
        }
    }

    /// Bytes queued now, and how many times the feed overflowed.
    public var queuedBytes: Int { queue.withLock { $0.bytes } }
    public var overflowCount: Int { queue.withLock { $0.overflowCount } }
}
