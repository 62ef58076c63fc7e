/// One record of a batch (Kafka's Record, magic 2).
///
/// Byte layout, varints zigzag-encoded as in Kafka:
/// `length: varint` (bytes after it), `attributes: int8` (unused, 0),
/// `timestampDelta: varlong`, `offsetDelta: varint`, `keyLength: varint` (-1 for none),
/// `key`, `valueLength: varint` (-1 for none), `value`, `headerCount: varint`, then per
/// header `keyLength: varint`, `key` (UTF-8), `valueLength: varint` (-1 for none), `value`.
public struct Record: Equatable, Hashable, Sendable {
    public var attributes: Int8
    public var timestampDelta: Int64
    public var offsetDelta: Int32
    public var key: [UInt8]?
    public var value: [UInt8]?
    public var headers: [RecordHeader]

    public init(
        attributes: Int8 = 0, timestampDelta: Int64 = 0, offsetDelta: Int32 = 0,
        key: [UInt8]?, value: [UInt8]?, headers: [RecordHeader] = []
    ) {
        self.attributes = attributes
        self.timestampDelta = timestampDelta
        self.offsetDelta = offsetDelta
        self.key = key
        self.value = value
        self.headers = headers
    }
}

public struct RecordHeader: Equatable, Hashable, Sendable {
    public var key: String
    public var value: [UInt8]?

    public init(key: String, value: [UInt8]?) {
        self.key = key
        self.value = value
    }
}

/// Bounds that decoding and validation enforce, so that hostile bytes cannot make them
/// allocate without limit. Defaults are the hard limits of `Limits`.
public struct BatchLimits: Sendable, Equatable {
    public var batchBytesMax: Int
    public var recordCountMax: Int
    public var decompressedBytesMax: Int

    public init(
        batchBytesMax: Int = Limits.batchBytesMax,
        recordCountMax: Int = Limits.batchRecordCountMax,
        decompressedBytesMax: Int = Limits.batchDecompressedBytesMax
    ) {
        self.batchBytesMax = batchBytesMax
        self.recordCountMax = recordCountMax
        self.decompressedBytesMax = decompressedBytesMax
    }
}

/// A decoded RecordBatch v2: the header fields and the records, decompressed.
public struct RecordBatch: Equatable, Sendable {
    public var baseOffset: Int64
    public var partitionLeaderEpoch: Int32
    public var attributes: BatchAttributes
    public var baseTimestamp: Int64
    public var maxTimestamp: Int64
    public var producerId: Int64
    public var producerEpoch: Int16
    public var baseSequence: Int32
    public var records: [Record]

    public init(
        baseOffset: Int64 = 0, partitionLeaderEpoch: Int32 = -1,
        attributes: BatchAttributes = BatchAttributes(compression: .none),
        baseTimestamp: Int64, maxTimestamp: Int64? = nil,
        producerId: Int64 = -1, producerEpoch: Int16 = -1, baseSequence: Int32 = -1,
        records: [Record]
    ) {
        self.baseOffset = baseOffset
        self.partitionLeaderEpoch = partitionLeaderEpoch
        self.attributes = attributes
        self.baseTimestamp = baseTimestamp
        self.maxTimestamp = maxTimestamp ?? (baseTimestamp + (records.map(\.timestampDelta).max() ?? 0))
        self.producerId = producerId
        self.producerEpoch = producerEpoch
        self.baseSequence = baseSequence
        self.records = records
    }

    /// Builds a batch of `values` with dense offset deltas, all at `timestamp`.
    public static func make(
        values: [(key: [UInt8]?, value: [UInt8]?)], timestamp: Int64,
        compression: CompressionCodec = .none,
        producerId: Int64 = -1, producerEpoch: Int16 = -1, baseSequence: Int32 = -1
    ) -> RecordBatch {
        let records = values.enumerated().map { index, item in
            Record(offsetDelta: Int32(index), key: item.key, value: item.value)
        }
        return RecordBatch(
            attributes: BatchAttributes(compression: compression), baseTimestamp: timestamp,
            producerId: producerId, producerEpoch: producerEpoch, baseSequence: baseSequence,
            records: records)
    }

    // MARK: Encoding

    /// The batch's bytes, with `batchLength`, `lastOffsetDelta`, `recordCount` and the CRC
    /// computed. Records are compressed as `attributes` say (none or LZ4).
    public func encoded() -> [UInt8] {
        precondition(!records.isEmpty, "a batch holds at least one record")
        var body: [UInt8] = []
        body.reserveCapacity(records.count * 32)
        for record in records { Self.encode(record, to: &body) }
        switch attributes.compression {
        case .none?: break
        case .lz4?: body = body.withUnsafeBytes { LZ4Frame.compress($0) }
        default: preconditionFailure("encoding supports compression none and lz4 only")
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(RecordBatchHeader.size + body.count)
        ByteWriter.writeInteger(baseOffset, to: &bytes)
        ByteWriter.writeInteger(Int32(RecordBatchHeader.size - RecordBatchHeader.logOverhead + body.count), to: &bytes)
        ByteWriter.writeInteger(partitionLeaderEpoch, to: &bytes)
        ByteWriter.writeInteger(RecordBatchHeader.magicV2, to: &bytes)
        ByteWriter.writeInteger(UInt32(0), to: &bytes)
        ByteWriter.writeInteger(attributes.rawValue, to: &bytes)
        ByteWriter.writeInteger(records.map(\.offsetDelta).max() ?? 0, to: &bytes)
        ByteWriter.writeInteger(baseTimestamp, to: &bytes)
        ByteWriter.writeInteger(maxTimestamp, to: &bytes)
        ByteWriter.writeInteger(producerId, to: &bytes)
        ByteWriter.writeInteger(producerEpoch, to: &bytes)
        ByteWriter.writeInteger(baseSequence, to: &bytes)
        ByteWriter.writeInteger(Int32(records.count), to: &bytes)
        bytes.append(contentsOf: body)
        let crc = bytes.withUnsafeBytes {
            CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[RecordBatchHeader.Field.attributes...]))
        }
        ByteWriter.setInteger(crc, at: RecordBatchHeader.Field.crc, in: &bytes)
        return bytes
    }

    static func encode(_ record: Record, to bytes: inout [UInt8]) {
        var inner: [UInt8] = []
        ByteWriter.writeInteger(record.attributes, to: &inner)
        ByteWriter.writeVarint(record.timestampDelta, to: &inner)
        ByteWriter.writeVarint(Int64(record.offsetDelta), to: &inner)
        encodeNullable(record.key, to: &inner)
        encodeNullable(record.value, to: &inner)
        ByteWriter.writeVarint(Int64(record.headers.count), to: &inner)
        for header in record.headers {
            let key = Array(header.key.utf8)
            ByteWriter.writeVarint(Int64(key.count), to: &inner)
            inner.append(contentsOf: key)
            encodeNullable(header.value, to: &inner)
        }
        ByteWriter.writeVarint(Int64(inner.count), to: &bytes)
        bytes.append(contentsOf: inner)
    }

    private static func encodeNullable(_ value: [UInt8]?, to bytes: inout [UInt8]) {
        guard let value else {
            ByteWriter.writeVarint(-1, to: &bytes)
            return
        }
        ByteWriter.writeVarint(Int64(value.count), to: &bytes)
        bytes.append(contentsOf: value)
    }

    // MARK: Decoding

    /// Decodes a whole batch, checking everything `RecordBatchValidator.validate` checks.
    /// Control batches are refused unless `allowingControl` (producers may not send them;
    /// the log holds the ones the server writes, such as refusal markers).
    public static func decode(_ bytes: UnsafeRawBufferPointer, limits: BatchLimits = BatchLimits(), allowingControl: Bool = false) throws(FormatError) -> RecordBatch {
        var records: [Record] = []
        let header = try RecordBatchValidator.walk(bytes, limits: limits, allowingControl: allowingControl) { record in records.append(record) }
        return RecordBatch(
            baseOffset: header.baseOffset, partitionLeaderEpoch: header.partitionLeaderEpoch,
            attributes: header.attributes, baseTimestamp: header.baseTimestamp,
            maxTimestamp: header.maxTimestamp, producerId: header.producerId,
            producerEpoch: header.producerEpoch, baseSequence: header.baseSequence,
            records: records)
    }

    public static func decode(_ bytes: [UInt8], limits: BatchLimits = BatchLimits(), allowingControl: Bool = false) throws(FormatError) -> RecordBatch {
        try withBytes(bytes) { (raw) throws(FormatError) in try decode(raw, limits: limits, allowingControl: allowingControl) }
    }
}
