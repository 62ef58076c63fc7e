/// Checks a producer's batch before it is appended, and stamps what the server owns.
///
/// `validate` is the gate in front of the disk: a batch that passes is complete (length
/// matches the bytes), magic 2, CRC-correct, uncompressed or LZ4, not transactional or
/// control (Lodestone has neither; the server's own refusal markers are control batches),
/// attribute bits 6 to 15 zero, no producer epoch or sequence without a producer id, with
/// `recordCount` records whose attributes are 0 and whose offset deltas are exactly 0, 1,
/// 2, ... (so offsets stay dense once the server patches `baseOffset`), every record's
/// fields within its length, and nothing after the last record.
public enum RecordBatchValidator {
    public static func validate(_ bytes: UnsafeRawBufferPointer, limits: BatchLimits = BatchLimits()) throws(FormatError) -> RecordBatchHeader {
        try walk(bytes, limits: limits, visit: nil)
    }

    public static func validate(_ bytes: [UInt8], limits: BatchLimits = BatchLimits()) throws(FormatError) -> RecordBatchHeader {
        try withBytes(bytes) { (raw) throws(FormatError) in try validate(raw, limits: limits) }
    }

    /// Walks the batch's records, handing each decoded record to `visit` when it is given
    /// (validation alone parses without materializing records).
    static func walk(
        _ bytes: UnsafeRawBufferPointer, limits: BatchLimits, allowingControl: Bool = false, visit: ((Record) -> Void)?
    ) throws(FormatError) -> RecordBatchHeader {
        if bytes.count > limits.batchBytesMax {
            throw FormatError(.limitExceeded, "batch of \(bytes.count) bytes exceeds the limit of \(limits.batchBytesMax)")
        }
        let header = try RecordBatchHeader.verify(bytes)
        if Int(header.recordCount) > limits.recordCountMax {
            throw FormatError(.limitExceeded, "batch of \(header.recordCount) records exceeds the limit of \(limits.recordCountMax)")
        }
        if header.attributes.isTransactional || (header.attributes.isControl && !allowingControl) {
            throw FormatError(.badRecord, "transactional and control batches are not supported")
        }
        if header.attributes.rawValue & ~0x3F != 0 {
            throw FormatError(.badRecord, "attributes \(header.attributes.rawValue) set bits above bit 5 (bit 6, a delete horizon, and bits 7 to 15 must be 0)")
        }
        if header.producerId == -1 && (header.producerEpoch != -1 || header.baseSequence != -1) {
            throw FormatError(.badRecord, "a batch without a producer id (-1) has producer epoch \(header.producerEpoch) and base sequence \(header.baseSequence); both must be -1")
        }
        let body = UnsafeRawBufferPointer(rebasing: bytes[RecordBatchHeader.size...])
        switch header.attributes.compression {
        case .none?:
            try walkRecords(body, header: header, visit: visit)
        case .lz4?:
            let plain = try LZ4Frame.decompress(body, outputBytesMax: limits.decompressedBytesMax)
            try withBytes(plain) { (raw) throws(FormatError) in try walkRecords(raw, header: header, visit: visit) }
        default:
            throw FormatError(.unsupportedCompression, "compression code \(header.attributes.compressionCode) is not supported (only none and lz4)")
        }
        return header
    }

    private static func walkRecords(
        _ body: UnsafeRawBufferPointer, header: RecordBatchHeader, visit: ((Record) -> Void)?
    ) throws(FormatError) {
        var cursor = ByteCursor(body, context: "records")
        for index in 0..<Int(header.recordCount) {
            let length = Int(try cursor.readVarint("record \(index) length"))
            if length < 0 {
                throw FormatError(.badRecord, "record \(index) has negative length \(length)")
            }
            let recordBytes = try cursor.readSlice(length, "record \(index)")
            let record = try readRecord(recordBytes, index: index, materialize: visit != nil)
            if let visit { visit(record) }
        }
        if cursor.remaining != 0 {
            throw FormatError(.trailingBytes, "\(cursor.remaining) bytes follow the last of \(header.recordCount) records")
        }
    }

    private static func readRecord(_ bytes: UnsafeRawBufferPointer, index: Int, materialize: Bool) throws(FormatError) -> Record {
        var cursor = ByteCursor(bytes, context: "record", index: index)
        let attributes = try cursor.readInteger(Int8.self, "attributes")
        if attributes != 0 {
            throw FormatError(.badRecord, "record \(index) has attributes \(attributes); record attributes are unused and must be 0")
        }
        let timestampDelta = try cursor.readVarlong("timestampDelta")
        let offsetDelta = try cursor.readVarint("offsetDelta")
        if Int(offsetDelta) != index {
            throw FormatError(.badRecord, "record \(index) has offsetDelta \(offsetDelta); offset deltas must be 0, 1, 2, ...")
        }
        let key = try readNullable(&cursor, "key")
        if let key, key.count > Limits.recordKeyBytesMax {
            throw FormatError(.limitExceeded, "record \(index) key of \(key.count) bytes exceeds \(Limits.recordKeyBytesMax)")
        }
        let value = try readNullable(&cursor, "value")
        let headerCount = Int(try cursor.readVarint("headerCount"))
        if headerCount < 0 || headerCount > Limits.recordHeaderCountMax {
            throw FormatError(.badRecord, "record \(index) has header count \(headerCount) (allowed 0 to \(Limits.recordHeaderCountMax))")
        }
        var headers: [RecordHeader] = []
        for headerIndex in 0..<headerCount {
            let keyLength = Int(try cursor.readVarint("header \(headerIndex) key length"))
            if keyLength < 0 {
                throw FormatError(.badRecord, "record \(index) header \(headerIndex) has a null key")
            }
            let keyBytes = try cursor.readSlice(keyLength, "header \(headerIndex) key")
            guard let headerKey = String(validating: keyBytes, as: UTF8.self) else {
                throw FormatError(.badRecord, "record \(index) header \(headerIndex) key is not valid UTF-8")
            }
            let headerValue = try readNullable(&cursor, "header \(headerIndex) value")
            if materialize { headers.append(RecordHeader(key: headerKey, value: headerValue.map { Array($0) })) }
        }
        if cursor.remaining != 0 {
            throw FormatError(.badRecord, "record \(index) has \(cursor.remaining) bytes after its last header")
        }
        if !materialize {
            return Record(attributes: attributes, timestampDelta: timestampDelta, offsetDelta: offsetDelta, key: nil, value: nil)
        }
        return Record(
            attributes: attributes, timestampDelta: timestampDelta, offsetDelta: offsetDelta,
            key: key.map { Array($0) }, value: value.map { Array($0) }, headers: headers)
    }

    /// Reads a nullable byte field without copying it; nil for length -1.
    private static func readNullable(_ cursor: inout ByteCursor, _ field: @autoclosure () -> String) throws(FormatError) -> UnsafeRawBufferPointer? {
        let length = Int(try cursor.readVarint("\(field()) length"))
        if length == -1 { return nil }
        if length < -1 {
            throw FormatError(.badRecord, "\(cursor.context()): \(field()) length \(length) is below -1")
        }
        return try cursor.readSlice(length, field())
    }
}

/// The server's changes to a validated batch (design decision 1): `baseOffset`, the
/// partition leader epoch (Lodestone has one leader for ever: 0), the "log append time"
/// attribute bit, and `baseTimestamp` = `maxTimestamp` = the append time; then the CRC,
/// recomputed once. Records, with their timestamp deltas, are never rewritten.
public enum RecordBatchStamp {
    public static let partitionLeaderEpoch: Int32 = 0

    public static func stamp(_ bytes: UnsafeMutableRawBufferPointer, baseOffset: Int64, appendTime: Int64) {
        precondition(bytes.count >= RecordBatchHeader.size, "stamp needs a whole batch")
        typealias F = RecordBatchHeader.Field
        bytes.storeBytes(of: baseOffset.bigEndian, toByteOffset: F.baseOffset, as: Int64.self)
        bytes.storeBytes(of: partitionLeaderEpoch.bigEndian, toByteOffset: F.partitionLeaderEpoch, as: Int32.self)
        var attributes = BatchAttributes(rawValue: Int16(bigEndian: bytes.loadUnaligned(fromByteOffset: F.attributes, as: Int16.self)))
        attributes.timestampType = .logAppendTime
        bytes.storeBytes(of: attributes.rawValue.bigEndian, toByteOffset: F.attributes, as: Int16.self)
        bytes.storeBytes(of: appendTime.bigEndian, toByteOffset: F.baseTimestamp, as: Int64.self)
        bytes.storeBytes(of: appendTime.bigEndian, toByteOffset: F.maxTimestamp, as: Int64.self)
        let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[F.attributes...]))
        bytes.storeBytes(of: crc.bigEndian, toByteOffset: F.crc, as: UInt32.self)
    }

    public static func stamp(_ bytes: inout [UInt8], baseOffset: Int64, appendTime: Int64) {
        bytes.withUnsafeMutableBytes { stamp($0, baseOffset: baseOffset, appendTime: appendTime) }
    }
}
