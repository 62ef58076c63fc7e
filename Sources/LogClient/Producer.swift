import LogFormat
import NIOCore
import WireProtocol

/// One record to produce: key (the resource), value, headers, and optionally the partition
/// (raw topics; a flip record always goes to its resource's partition).
public struct ProducerRecord: Sendable {
    public var key: [UInt8]?
    public var value: [UInt8]?
    public var headers: [RecordHeader]
    public var partition: Int?

    public init(key: [UInt8]?, value: [UInt8]?, headers: [RecordHeader] = [], partition: Int? = nil) {
        self.key = key
        self.value = value
        self.headers = headers
        self.partition = partition
    }
}

/// What became of one record (the produce command prints these names).
public enum RecordOutcome: Equatable, Sendable {
    case committed(partition: Int, offset: Int64)
    /// A retry found the record's batch already stored: its original offset.
    case duplicate(partition: Int, offset: Int64)
    /// Ack none: sent, no reply expected.
    case sent(partition: Int)
    case invalid(String)
    case fenced(String)
    case replayed(String)
    case outOfOrder(String)
    /// A limit is reached (named); not retried.
    case refused(String)
    /// The partition stayed overloaded through every retry.
    case overloaded(String)
    /// The outcome is unknown, or an error persisted through every retry.
    case failed(String)

    public var name: String {
        switch self {
        case .committed: return "committed"
        case .duplicate: return "duplicate"
        case .sent: return "sent"
        case .invalid: return "invalid"
        case .fenced: return "fenced"
        case .replayed: return "replayed"
        case .outOfOrder: return "out_of_order"
        case .refused: return "refused"
        case .overloaded: return "overloaded"
        case .failed: return "failed"
        }
    }
}

public struct ProducerConfiguration: Sendable {
    public var ack: AppendRequest.Ack = .durable
    /// A batch goes out when it holds this many records or bytes, or when its first record
    /// has waited `lingerMilliseconds`.
    public var batchRecordsMax = 1000
    public var batchBytesMax = 512 << 10
    public var lingerMilliseconds: Int64 = 5
    public var compression: CompressionCodec = .none
    public var requestTimeoutMilliseconds: Int64 = 10_000
    /// Attempts per batch (the first included) before its records are reported failed.
    public var attemptsMax = 30
    public var retryBackoffMilliseconds: Int64 = 50
    public var retryBackoffMillisecondsMax: Int64 = 2000
    public var clientName = "lodestone-producer"

    public init() {}
}

/// An idempotent producer for one topic (design decision 8, client side).
///
/// It initialises its identity once (by name: the next epoch of that name, fencing older
/// incarnations; without: a new anonymous id) and keeps it across reconnects and server
/// restarts, so its own retries are recognised as duplicates and never fenced; it
/// re-initialises only when the server answers `unknown_producer`. Per partition it keeps
/// one batch in flight, numbers batches with consecutive sequence numbers, and on a
/// timeout, a lost connection, `overloaded` or a passing server error resends the same
/// batch with the same sequence numbers (the server answers `duplicate` if it was stored).
/// A refused batch's offending records get their reasons; the others are resubmitted first,
/// as a new batch, before any later record. Ack none sends without a producer id.
public actor IdempotentProducer {
    public let topic: String
    public let name: String?
    let host: String
    let port: Int
    let token: String
    let configuration: ProducerConfiguration
    var connection: LodestoneConnection?
    var identity: (id: Int64, epoch: Int16)?
    /// Bumped by every (re-)initialisation; sequence numbers belong to one generation.
    var generation = 0
    var topicInfo: TopicInfo?
    var partitions: [Int: PartitionQueue] = [:]
    var fatal: RecordOutcome?

    struct Pending {
        var record: ProducerRecord
        var completion: @Sendable (RecordOutcome) -> Void
        var enqueued: ContinuousClock.Instant
    }

    final class PartitionQueue {
        var records: [Pending] = []
        /// The next sequence number, valid for identity `generation`.
        var sequence: Int32 = 0
        var generation = 0
        var running = false

        func sequence(for generation: Int) -> Int32 { self.generation == generation ? sequence : 0 }
    }

    public init(host: String, port: Int, token: String = "", topic: String, name: String? = nil, configuration: ProducerConfiguration = ProducerConfiguration()) {
        self.host = host
        self.port = port
        self.token = token
        self.topic = topic
        self.name = name
        self.configuration = configuration
    }

    /// Connects, learns the topic, and (for acks other than none) initialises the identity.
    public func start() async throws(ClientError) {
        let connection = try await connect()
        guard case .topic(let info) = try await connection.send(.describeTopic(topic)) else { throw .badReply("describeTopic") }
        topicInfo = info
        if configuration.ack != .none { try await initialize() }
    }

    public var producerIdentity: (id: Int64, epoch: Int16)? { identity }
    public var topicDescription: TopicInfo? { topicInfo }

    /// Queues a record; `completion` gets its outcome once.
    public func send(_ record: ProducerRecord, completion: @escaping @Sendable (RecordOutcome) -> Void) {
        if let fatal { return completion(fatal) }
        guard let info = topicInfo else { return completion(.failed("the producer was not started")) }
        let partition: Int
        if info.kind == .flip || record.partition == nil {
            guard let key = record.key else {
                if info.kind == .flip { return completion(.invalid("a flip record needs its resource as key")) }
                return send(ProducerRecord(key: record.key, value: record.value, headers: record.headers, partition: 0), completion: completion)
            }
            partition = Partitioner.partition(forKey: key, partitionCount: Int(info.partitionCount))
            if info.kind == .flip, let asked = record.partition, asked != partition {
                return completion(.invalid("resource belongs to partition \(partition), not \(asked)"))
            }
        } else {
            partition = record.partition!
            guard (0..<Int(info.partitionCount)).contains(partition) else {
                return completion(.invalid("partition \(partition) is outside 0...\(info.partitionCount - 1)"))
            }
        }
        let queue = partitions[partition] ?? PartitionQueue()
        partitions[partition] = queue
        queue.records.append(Pending(record: record, completion: completion, enqueued: .now))
        if !queue.running {
            queue.running = true
            Task { await self.drain(partition) }
        }
    }

    /// Sends a record and waits for its outcome.
    public func send(_ record: ProducerRecord) async -> RecordOutcome {
        await withCheckedContinuation { continuation in send(record) { continuation.resume(returning: $0) } }
    }

    /// Waits until every queued record has its outcome.
    public func flush() async {
        while partitions.values.contains(where: { $0.running }) { try? await Task.sleep(for: .milliseconds(2)) }
    }

    public func close() async {
        await flush()
        await connection?.close()
        connection = nil
    }

    // MARK: Sending

    private func drain(_ partition: Int) async {
        let queue = partitions[partition]!
        while !queue.records.isEmpty {
            // Linger: let a batch fill, up to its limits.
            if let first = queue.records.first, queue.records.count < configuration.batchRecordsMax {
                let deadline = first.enqueued + .milliseconds(configuration.lingerMilliseconds)
                if deadline > .now { try? await Task.sleep(until: deadline) }
            }
            var batch: [Pending] = []
            var bytes = 0
            while let next = queue.records.first, batch.count < configuration.batchRecordsMax,
                  batch.isEmpty || bytes + (next.record.value?.count ?? 0) + (next.record.key?.count ?? 0) + 32 <= configuration.batchBytesMax {
                bytes += (next.record.value?.count ?? 0) + (next.record.key?.count ?? 0) + 32
                batch.append(queue.records.removeFirst())
            }
            let resubmit = await deliver(batch, partition: partition, queue: queue)
            queue.records.insert(contentsOf: resubmit, at: 0)
        }
        queue.running = false
    }

    /// Sends one batch until it has an outcome; returns records to resubmit first.
    ///
    /// Each attempt uses the current identity: if a re-initialisation happened since the
    /// batch was encoded (another partition met `unknown_producer`), the batch is encoded
    /// again under the new identity with that partition's sequence for it.
    private func deliver(_ batch: [Pending], partition: Int, queue: PartitionQueue) async -> [Pending] {
        var backoff = configuration.retryBackoffMilliseconds
        var lastProblem = "no attempt was made"
        /// The last attempt's error code, when it had one: the retry decision reads it.
        var lastCode: ErrorCode?
        var encoded: (generation: Int, sequence: Int32, bytes: [UInt8])?
        for _ in 0..<configuration.attemptsMax {
            if let fatal {
                for pending in batch { pending.completion(fatal) }
                return []
            }
            if encoded?.generation != generation {
                let sequence = queue.sequence(for: generation)
                encoded = (generation, sequence, encode(batch, sequence: sequence))
            }
            let (usedGeneration, sequence, bytes) = encoded!
            let request = Request.append(AppendRequest(topic: topic, partition: UInt32(partition), ack: configuration.ack, batches: [ByteBuffer(bytes: bytes)]))
            do {
                let connection = try await connect()
                if configuration.ack == .none {
                    connection.sendWithoutReply(request)
                    for pending in batch { pending.completion(.sent(partition: partition)) }
                    return []
                }
                guard case .append(let results) = try await connection.send(request, timeoutMilliseconds: configuration.requestTimeoutMilliseconds), let result = results.first else {
                    lastProblem = "the append reply did not hold a result"
                    continue
                }
                lastCode = result.error == .none ? nil : result.error
                if result.error != .none {
                    lastProblem = "\(result.error.name): \(result.message)"
                    switch result.error {
                    case .invalidBatch, .invalidArgument, .notFound, .unauthorized, .corruption:
                        for pending in batch { pending.completion(.invalid(lastProblem)) }
                        return []
                    case .limitReached:
                        for pending in batch { pending.completion(.refused(lastProblem)) }
                        return []
                    default:
                        break
                    }
                } else {
                    switch result.outcome {
                    case .committed, .duplicate:
                        advance(queue, generation: usedGeneration, past: sequence, count: batch.count)
                        for (index, pending) in batch.enumerated() {
                            let offset = result.baseOffset + Int64(index)
                            pending.completion(result.outcome == .committed ? .committed(partition: partition, offset: offset) : .duplicate(partition: partition, offset: offset))
                        }
                        return []
                    case .refused where !result.refusals.isEmpty && result.refusals.allSatisfy({ $0.reason == .wait }):
                        // A limit that clears (batches in flight, producers tracked): no
                        // sequence number was used; the same batch goes again after a pause.
                        lastProblem = "refused for now: \(result.refusals[0].message)"
                    case .refused:
                        advance(queue, generation: usedGeneration, past: sequence, count: batch.count)
                        var refusedIndexes = Set<Int>()
                        for refusal in result.refusals where refusal.index < batch.count {
                            refusedIndexes.insert(refusal.index)
                            let message = refusal.message
                            switch refusal.reason {
                            case .invalid: batch[refusal.index].completion(.invalid(message))
                            case .fenced: batch[refusal.index].completion(.fenced(message))
                            case .replayed: batch[refusal.index].completion(.replayed(message))
                            case .refused, .wait: batch[refusal.index].completion(.refused(message))
                            }
                        }
                        return batch.enumerated().filter { !refusedIndexes.contains($0.offset) }.map(\.element)
                    case .fenced:
                        lastProblem = "fenced: \(result.message)"
                        // Fenced by our own re-initialisation: send again as the new identity.
                        if usedGeneration != generation { continue }
                        fatal = .fenced("this producer was fenced: \(result.message)")
                        for pending in batch { pending.completion(fatal!) }
                        return []
                    case .outOfOrder:
                        if usedGeneration != generation { continue }
                        for pending in batch { pending.completion(.outOfOrder(result.message)) }
                        return []
                    case .unknownProducer:
                        lastProblem = "unknown_producer: \(result.message)"
                        if usedGeneration == generation { try await initialize() }
                        continue
                    case .noOutcome:
                        lastProblem = "the server gave no outcome and no error"
                    }
                }
            } catch {
                lastProblem = "\(error)"
                if case .server(let protocolError) = error { lastCode = protocolError.code } else { lastCode = nil }
                if case .server(let protocolError) = error, protocolError.code == .unauthorized || protocolError.code == .notFound {
                    for pending in batch { pending.completion(.invalid(lastProblem)) }
                    return []
                }
                await dropConnection()
            }
            try? await Task.sleep(for: .milliseconds(backoff))
            backoff = min(backoff * 2, configuration.retryBackoffMillisecondsMax)
        }
        let outcome: RecordOutcome = lastCode == .overloaded ? .overloaded(lastProblem) : .failed("no outcome after \(configuration.attemptsMax) attempts: \(lastProblem)")
        for pending in batch { pending.completion(outcome) }
        return []
    }

    /// The partition's next sequence follows the batch, if it was sent as the current identity.
    private func advance(_ queue: PartitionQueue, generation usedGeneration: Int, past sequence: Int32, count: Int) {
        guard usedGeneration == generation else { return }
        queue.sequence = next(sequence, count)
        queue.generation = usedGeneration
    }

    private func encode(_ batch: [Pending], sequence: Int32) -> [UInt8] {
        let records = batch.enumerated().map { index, pending in
            Record(offsetDelta: Int32(index), key: pending.record.key, value: pending.record.value, headers: pending.record.headers)
        }
        let id = configuration.ack == .none ? -1 : (identity?.id ?? -1)
        let epoch = configuration.ack == .none ? Int16(-1) : (identity?.epoch ?? -1)
        return RecordBatch(
            attributes: BatchAttributes(compression: configuration.compression), baseTimestamp: 0, producerId: id, producerEpoch: epoch,
            baseSequence: id < 0 ? -1 : sequence, records: records).encoded()
    }

    private func next(_ sequence: Int32, _ count: Int) -> Int32 {
        let last = Int64(sequence) + Int64(count)
        return Int32(last > Int64(Int32.max) ? last - Int64(Int32.max) - 1 : last)
    }

    // MARK: Connection and identity

    private func connect() async throws(ClientError) -> LodestoneConnection {
        if let connection, connection.isActive { return connection }
        let fresh = try await LodestoneConnection.connect(host: host, port: port, token: token, clientName: configuration.clientName)
        connection = fresh
        return fresh
    }

    private func dropConnection() async {
        await connection?.close()
        connection = nil
    }

    private func initialize() async throws(ClientError) {
        let connection = try await connect()
        guard case .producer(let id, let epoch) = try await connection.send(.initProducer(name: name)) else { throw .badReply("initProducer") }
        identity = (id, epoch)
        generation += 1
    }
}
