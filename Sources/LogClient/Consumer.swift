import LogFormat
import NIOCore
import WireProtocol

/// One record as a consumer sees it: where it is, when it was appended, and its fields.
public struct ConsumedRecord: Equatable, Sendable {
    public var partition: Int
    public var offset: Int64
    /// The server's append time (milliseconds), the batch's log-append timestamp.
    public var appendTime: Int64
    public var key: [UInt8]?
    public var value: [UInt8]?
    public var headers: [RecordHeader]

    public init(partition: Int, offset: Int64, appendTime: Int64, key: [UInt8]?, value: [UInt8]?, headers: [RecordHeader]) {
        self.partition = partition
        self.offset = offset
        self.appendTime = appendTime
        self.key = key
        self.value = value
        self.headers = headers
    }
}

/// Reads one partition from an offset, in offset order, with one fetch always ahead: as
/// soon as a fetch's reply arrives, the next fetch (at its `nextOffset`) is sent, so the
/// network and the server's disk work while the caller handles the records.
public actor PartitionConsumer {
    public let topic: String
    public let partition: Int
    public private(set) var nextOffset: Int64
    let connection: LodestoneConnection
    let maxBytes: UInt32
    let maxWaitMilliseconds: UInt32
    var ahead: Task<Reply, any Error>?

    public init(connection: LodestoneConnection, topic: String, partition: Int, from offset: Int64, maxBytes: UInt32 = 1 << 20, maxWaitMilliseconds: UInt32 = 1000) {
        self.connection = connection
        self.topic = topic
        self.partition = partition
        self.nextOffset = offset
        self.maxBytes = maxBytes
        self.maxWaitMilliseconds = maxWaitMilliseconds
    }

    private func startFetch(at offset: Int64, wait: UInt32) -> Task<Reply, any Error> {
        let request = Request.fetch(FetchRequest(topic: topic, partition: UInt32(partition), offset: offset, maxBytes: maxBytes, maxWaitMilliseconds: wait))
        let connection = self.connection
        return Task { try await connection.send(request, timeoutMilliseconds: Int64(wait) + 30_000) }
    }

    /// The next records (possibly none, when the wait ended with nothing new) and the end
    /// of durable data the server reported.
    public func next(wait: Bool = true) async throws -> (records: [ConsumedRecord], durableEnd: Int64) {
        let task = ahead ?? startFetch(at: nextOffset, wait: wait ? maxWaitMilliseconds : 0)
        ahead = nil
        guard case .fetch(let reply) = try await task.value else { throw ClientError.badReply("fetch was not answered with records") }
        let records = try Self.records(in: reply.records, partition: partition, from: nextOffset)
        nextOffset = reply.nextOffset
        if !records.isEmpty { ahead = startFetch(at: nextOffset, wait: wait ? maxWaitMilliseconds : 0) }
        return (records, reply.durableEnd)
    }

    /// Stops the fetch running ahead.
    public func stop() {
        ahead?.cancel()
        ahead = nil
    }

    /// The data records of whole batches, from `offset` on (a fetch starts at the batch
    /// holding the offset); control batches are skipped.
    public static func records(in buffer: ByteBuffer, partition: Int, from offset: Int64) throws -> [ConsumedRecord] {
        var bytes = Array(buffer.readableBytesView)[...]
        var records: [ConsumedRecord] = []
        while !bytes.isEmpty {
            let header = try RecordBatchHeader.read(bytes: Array(bytes.prefix(RecordBatchHeader.size)))
            guard header.totalSize <= bytes.count else { throw ClientError.badReply("a fetched batch is cut short") }
            let batchBytes = Array(bytes.prefix(header.totalSize))
            bytes = bytes.dropFirst(header.totalSize)
            if header.attributes.isControl { continue }
            let batch = try RecordBatch.decode(batchBytes)
            for record in batch.records {
                let recordOffset = header.baseOffset + Int64(record.offsetDelta)
                if recordOffset < offset { continue }
                records.append(ConsumedRecord(partition: partition, offset: recordOffset, appendTime: header.maxTimestamp, key: record.key, value: record.value, headers: record.headers))
            }
        }
        return records
    }
}
