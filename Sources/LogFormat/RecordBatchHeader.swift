/// The 61-byte header of a Kafka RecordBatch (magic 2), the unit that producers send,
/// the wire carries, the disk stores and consumers read (design decision 1).
///
/// Byte layout, all integers big-endian (Docs/format.md has the full table):
///
/// | position | size | field | covered by CRC |
/// |---|---|---|---|
/// | 0 | 8 | baseOffset | no (the server assigns it) |
/// | 8 | 4 | batchLength: bytes after this field | no |
/// | 12 | 4 | partitionLeaderEpoch | no (the server sets it to 0) |
/// | 16 | 1 | magic = 2 | no |
/// | 17 | 4 | crc: CRC-32C of bytes 21 to the end | no |
/// | 21 | 2 | attributes | yes |
/// | 23 | 4 | lastOffsetDelta | yes |
/// | 27 | 8 | baseTimestamp | yes |
/// | 35 | 8 | maxTimestamp | yes |
/// | 43 | 8 | producerId | yes |
/// | 51 | 2 | producerEpoch | yes |
/// | 53 | 4 | baseSequence | yes |
/// | 57 | 4 | recordCount | yes |
/// | 61 | ... | records (compressed after the count when attributes say so) | yes |
public struct RecordBatchHeader: Equatable, Hashable, Sendable {
    public static let size = 61
    /// Bytes before `batchLength`'s coverage starts (baseOffset and batchLength).
    public static let logOverhead = 12
    /// Smallest `batchLength`: the header after the length field, with no records.
    public static let batchLengthMin = Int32(size - logOverhead)
    public static let magicV2: Int8 = 2

    public enum Field {
        public static let baseOffset = 0
        public static let batchLength = 8
        public static let partitionLeaderEpoch = 12
        public static let magic = 16
        public static let crc = 17
        public static let attributes = 21
        public static let lastOffsetDelta = 23
        public static let baseTimestamp = 27
        public static let maxTimestamp = 35
        public static let producerId = 43
        public static let producerEpoch = 51
        public static let baseSequence = 53
        public static let recordCount = 57
    }

    public var baseOffset: Int64
    public var batchLength: Int32
    public var partitionLeaderEpoch: Int32
    public var magic: Int8
    public var crc: UInt32
    public var attributes: BatchAttributes
    public var lastOffsetDelta: Int32
    public var baseTimestamp: Int64
    public var maxTimestamp: Int64
    public var producerId: Int64
    public var producerEpoch: Int16
    public var baseSequence: Int32
    public var recordCount: Int32

    /// Bytes of the whole batch: the 12 bytes before `batchLength`'s coverage plus it.
    @inlinable public var totalSize: Int { Self.logOverhead + Int(batchLength) }
    /// Offset of the batch's last record.
    @inlinable public var lastOffset: Int64 { baseOffset + Int64(lastOffsetDelta) }
    /// Offset after the batch's last record.
    @inlinable public var nextOffset: Int64 { lastOffset + 1 }

    /// Reads the header fields at the start of `bytes`, checking only that they are present
    /// and that magic is 2. `verify` checks the rest.
    public static func read(_ bytes: UnsafeRawBufferPointer) throws(FormatError) -> RecordBatchHeader {
        var cursor = ByteCursor(bytes, context: "batch header")
        try cursor.require(size, "header")
        let header = RecordBatchHeader(
            baseOffset: try cursor.readInteger(Int64.self, "baseOffset"),
            batchLength: try cursor.readInteger(Int32.self, "batchLength"),
            partitionLeaderEpoch: try cursor.readInteger(Int32.self, "partitionLeaderEpoch"),
            magic: try cursor.readInteger(Int8.self, "magic"),
            crc: try cursor.readInteger(UInt32.self, "crc"),
            attributes: BatchAttributes(rawValue: try cursor.readInteger(Int16.self, "attributes")),
            lastOffsetDelta: try cursor.readInteger(Int32.self, "lastOffsetDelta"),
            baseTimestamp: try cursor.readInteger(Int64.self, "baseTimestamp"),
            maxTimestamp: try cursor.readInteger(Int64.self, "maxTimestamp"),
            producerId: try cursor.readInteger(Int64.self, "producerId"),
            producerEpoch: try cursor.readInteger(Int16.self, "producerEpoch"),
            baseSequence: try cursor.readInteger(Int32.self, "baseSequence"),
            recordCount: try cursor.readInteger(Int32.self, "recordCount"))
        if header.magic != magicV2 {
            throw FormatError(.badMagic, "batch magic is \(header.magic), expected 2")
        }
        return header
    }

    /// Reads the header of the batch that `bytes` holds exactly and checks what can be
    /// checked without decoding records: magic, a length that matches the bytes, a record
    /// count that matches `lastOffsetDelta`, and the CRC. This is the check every read
    /// makes before handing a batch on (a batch that fails it is never returned as data).
    public static func verify(_ bytes: UnsafeRawBufferPointer) throws(FormatError) -> RecordBatchHeader {
        let header = try read(bytes)
        if header.batchLength < batchLengthMin || header.totalSize != bytes.count {
            throw FormatError(.badLength, "batchLength \(header.batchLength) does not match the \(bytes.count) bytes of the batch")
        }
        if header.recordCount < 1 || header.lastOffsetDelta != header.recordCount - 1 {
            throw FormatError(.badLength, "recordCount \(header.recordCount) disagrees with lastOffsetDelta \(header.lastOffsetDelta)")
        }
        let computed = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[Field.attributes...]))
        if computed != header.crc {
            throw FormatError(.checksumMismatch, "batch at offset \(header.baseOffset): stored CRC \(hex(header.crc)), computed \(hex(computed))")
        }
        return header
    }
}

extension RecordBatchHeader {
    /// `read` for a byte array.
    public static func read(bytes: [UInt8]) throws(FormatError) -> RecordBatchHeader {
        try withBytes(bytes) { (raw) throws(FormatError) in try read(raw) }
    }

    /// `verify` for a byte array holding exactly one batch.
    public static func verify(bytes: [UInt8]) throws(FormatError) -> RecordBatchHeader {
        try withBytes(bytes) { (raw) throws(FormatError) in try verify(raw) }
    }
}

/// The `attributes` bits of a batch header.
public struct BatchAttributes: Equatable, Hashable, Sendable {
    public var rawValue: Int16

    @inlinable public init(rawValue: Int16) { self.rawValue = rawValue }

    public init(compression: CompressionCodec, timestampType: TimestampType = .createTime) {
        rawValue = Int16(compression.rawValue)
        self.timestampType = timestampType
    }

    /// Bits 0 to 2.
    @inlinable public var compressionCode: Int { Int(rawValue & 0x07) }
    /// nil when bits 0 to 2 name no codec Kafka defines.
    @inlinable public var compression: CompressionCodec? { CompressionCodec(rawValue: UInt8(compressionCode)) }

    /// Bit 3: 0 create time (the producer's clock), 1 log append time (the server's).
    public var timestampType: TimestampType {
        get { rawValue & 0x08 != 0 ? .logAppendTime : .createTime }
        set { rawValue = newValue == .logAppendTime ? rawValue | 0x08 : rawValue & ~0x08 }
    }

    /// Bit 4.
    @inlinable public var isTransactional: Bool { rawValue & 0x10 != 0 }
    /// Bit 5.
    @inlinable public var isControl: Bool { rawValue & 0x20 != 0 }
    /// Bit 6.
    @inlinable public var hasDeleteHorizon: Bool { rawValue & 0x40 != 0 }
}

public enum CompressionCodec: UInt8, Sendable {
    case none = 0
    case gzip = 1
    case snappy = 2
    case lz4 = 3
    case zstd = 4
}

public enum TimestampType: Sendable {
    case createTime
    case logAppendTime
}

func hex(_ value: UInt32) -> String {
    let digits = String(value, radix: 16)
    return "0x" + String(repeating: "0", count: 8 - digits.count) + digits
}
