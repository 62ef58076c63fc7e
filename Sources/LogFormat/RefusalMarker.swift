/// Why one record of a batch was refused (the batch is refused as a whole).
public struct RecordRefusal: Equatable, Hashable, Sendable, CustomStringConvertible {
    public enum Reason: UInt8, Sendable, CaseIterable {
        /// The record breaks a rule: a flip event field, or it belongs to another partition.
        case invalid = 1
        /// Its resource's `(epoch, seq)` has a lower epoch than the last accepted pair.
        case fenced = 2
        /// Same epoch as the last accepted pair, and its seq is not higher.
        case replayed = 3
        /// A limit that does not clear is reached (resources tracked per flip partition,
        /// named in the message): the batch's sequence numbers are used up, retrying the
        /// record gets the same answer.
        case refused = 4
        /// A limit that clears by itself is reached (batches in flight per producer and
        /// partition, producers tracked per partition; named in the message): nothing is
        /// used up, the same batch may be sent again once earlier ones are answered.
        /// Never written in a refusal marker.
        case wait = 5
    }

    /// The record's position in its batch, from 0.
    public var index: Int
    public var reason: Reason
    public var message: String

    public init(index: Int, reason: Reason, message: String) {
        self.index = index
        self.reason = reason
        self.message = message
    }

    public var description: String { "record \(index): \(reason) (\(message))" }
}

/// The record a partition writes in place of a refused batch from an idempotent producer,
/// so that the refusal uses up the batch's sequence numbers durably and in log order, and
/// a retry gets the same answer after any restart (design decision 8).
///
/// It is a control batch (attributes bit 5) with the refused batch's producer id, epoch and
/// base sequence, holding one record. Key, as Kafka's control records: version (i16) = 0,
/// type (i16) = 0x4C44 (Kafka's own types are 0 abort and 1 commit; clients skip control
/// batches). Value, integers big-endian:
///
///     u8   version = 1
///     i32  the refused batch's last sequence number
///     u32  count of refused records, then per record:
///          u32 index in the batch, u8 reason (RecordRefusal.Reason), u16 length, UTF-8 message
public enum RefusalMarker {
    public static let controlType: Int16 = 0x4C44
    public static let version: UInt8 = 1
    public static let messageBytesMax = 512

    public static var key: [UInt8] {
        var bytes: [UInt8] = []
        ByteWriter.writeInteger(Int16(0), to: &bytes)
        ByteWriter.writeInteger(controlType, to: &bytes)
        return bytes
    }

    public static func encodeValue(lastSequence: Int32, refusals: [RecordRefusal]) -> [UInt8] {
        var bytes: [UInt8] = [version]
        ByteWriter.writeInteger(lastSequence, to: &bytes)
        ByteWriter.writeInteger(UInt32(refusals.count), to: &bytes)
        for refusal in refusals {
            ByteWriter.writeInteger(UInt32(refusal.index), to: &bytes)
            ByteWriter.writeInteger(refusal.reason.rawValue, to: &bytes)
            var message = Array(refusal.message.utf8.prefix(messageBytesMax))
            while String(validating: message, as: UTF8.self) == nil { message.removeLast() }
            ByteWriter.writeInteger(UInt16(message.count), to: &bytes)
            bytes.append(contentsOf: message)
        }
        return bytes
    }

    /// The whole control batch for a refused batch, ready to be stamped and appended.
    public static func batch(producerId: Int64, producerEpoch: Int16, baseSequence: Int32, lastSequence: Int32, refusals: [RecordRefusal], timestamp: Int64) -> [UInt8] {
        var attributes = BatchAttributes(compression: .none)
        attributes.rawValue |= 0x20
        return RecordBatch(
            attributes: attributes, baseTimestamp: timestamp, producerId: producerId, producerEpoch: producerEpoch,
            baseSequence: baseSequence,
            records: [Record(key: key, value: encodeValue(lastSequence: lastSequence, refusals: refusals))]).encoded()
    }

    /// The last sequence and the refusals of a stored marker batch; nil when the batch is not
    /// a refusal marker.
    public static func decode(_ batch: RecordBatch) throws(FormatError) -> (lastSequence: Int32, refusals: [RecordRefusal])? {
        guard batch.attributes.isControl, batch.records.count == 1, batch.records[0].key == key, let value = batch.records[0].value else { return nil }
        return try withBytes(value) { (raw) throws(FormatError) -> (Int32, [RecordRefusal]) in
            var cursor = ByteCursor(raw, context: "refusal marker")
            let version = try cursor.readUInt8("version")
            if version != Self.version { throw FormatError(.badMagic, "refusal marker version \(version) is not readable") }
            let lastSequence = try cursor.readInteger(Int32.self, "last sequence")
            let count = Int(try cursor.readInteger(UInt32.self, "count"))
            if count > Limits.batchRecordCountMax { throw FormatError(.badLength, "refusal marker claims \(count) records") }
            var refusals: [RecordRefusal] = []
            for _ in 0..<count {
                let index = Int(try cursor.readInteger(UInt32.self, "index"))
                let code = try cursor.readUInt8("reason")
                guard let reason = RecordRefusal.Reason(rawValue: code) else { throw FormatError(.badRecord, "refusal reason \(code) is unknown") }
                let length = Int(try cursor.readInteger(UInt16.self, "message length"))
                let message = String(decoding: try cursor.readSlice(length, "message"), as: UTF8.self)
                refusals.append(RecordRefusal(index: index, reason: reason, message: message))
            }
            if cursor.remaining != 0 { throw FormatError(.trailingBytes, "refusal marker has \(cursor.remaining) bytes after its last record") }
            return (lastSequence, refusals)
        }
    }
}
