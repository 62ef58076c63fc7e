import LogFormat
import LogIO

/// Replay-protection snapshots: the durable producer and resource state of a partition as
/// of an offset, so an open replays only the log after it. A checkpoint, derived from the
/// log while the log still holds what it summarizes (design decision 7); a missing,
/// damaged or stale one is ignored and the state is rebuilt from the log.
///
/// File `<20-digit offset>.snapshot` in the partition directory, a `ChecksummedFile`
/// (magic "LDRS", version 1) written atomically (temporary file, fsync, rename, directory
/// fsync) at every segment roll and at clean shutdown. Payload, integers big-endian:
///
///     i64 offset: the state covers the batches below it
///     u32 producer count, then per producer (by id):
///         i64 id, i16 epoch, i64 last append time, u8 batch count, then per batch:
///             i16 epoch, i32 first sequence, i32 last sequence, i64 append time, u8 kind
///             kind 1 (committed): i64 base offset, i64 last offset, i64 append time
///             kind 2 (refused): u32 count, then per record: u32 index, u8 reason, u16 length, UTF-8 message
///     u32 resource count, then per resource (by name): u16 length, UTF-8 name, i64 epoch, i64 seq
enum ReplaySnapshot {
    static let magic: UInt32 = 0x4C44_5253  // "LDRS"
    static let version: UInt16 = 1
    static let suffix = ".snapshot"

    static func fileName(offset: Int64) -> String {
        String(SegmentFileName.name(baseOffset: offset, kind: .log).dropLast(4)) + suffix
    }

    static func offset(ofFileName name: String) -> Int64? {
        guard name.hasSuffix(suffix) else { return nil }
        return SegmentFileName.parse(String(name.dropLast(suffix.count)) + ".log")?.baseOffset
    }

    static func encode(_ state: ReplayState, offset: Int64) -> [UInt8] {
        var bytes: [UInt8] = []
        ByteWriter.writeInteger(offset, to: &bytes)
        ByteWriter.writeInteger(UInt32(state.producers.count), to: &bytes)
        for (id, entry) in state.producers.sorted(by: { $0.key < $1.key }) {
            ByteWriter.writeInteger(id, to: &bytes)
            ByteWriter.writeInteger(entry.epoch, to: &bytes)
            ByteWriter.writeInteger(entry.lastAppendTime, to: &bytes)
            ByteWriter.writeInteger(UInt8(entry.batches.count), to: &bytes)
            for batch in entry.batches { encode(batch, to: &bytes) }
        }
        ByteWriter.writeInteger(UInt32(state.resources.count), to: &bytes)
        for (resource, mark) in state.resources.sorted(by: { $0.key < $1.key }) {
            ByteWriter.writeInteger(UInt16(resource.utf8.count), to: &bytes)
            bytes.append(contentsOf: resource.utf8)
            ByteWriter.writeInteger(mark.epoch, to: &bytes)
            ByteWriter.writeInteger(mark.seq, to: &bytes)
        }
        return ChecksummedFile.encode(magic: magic, version: version, payload: bytes)
    }

    private static func encode(_ batch: ProducerBatch, to bytes: inout [UInt8]) {
        ByteWriter.writeInteger(batch.epoch, to: &bytes)
        ByteWriter.writeInteger(batch.firstSequence, to: &bytes)
        ByteWriter.writeInteger(batch.lastSequence, to: &bytes)
        ByteWriter.writeInteger(batch.appendTime, to: &bytes)
        switch batch.outcome {
        case .refused(let refusals):
            ByteWriter.writeInteger(UInt8(2), to: &bytes)
            ByteWriter.writeInteger(UInt32(refusals.count), to: &bytes)
            for refusal in refusals {
                ByteWriter.writeInteger(UInt32(refusal.index), to: &bytes)
                ByteWriter.writeInteger(refusal.reason.rawValue, to: &bytes)
                let message = Array(refusal.message.utf8.prefix(RefusalMarker.messageBytesMax))
                ByteWriter.writeInteger(UInt16(message.count), to: &bytes)
                bytes.append(contentsOf: message)
            }
        default:
            let result = batch.outcome.result ?? AppendResult(baseOffset: -1, lastOffset: -1, appendTime: -1)
            ByteWriter.writeInteger(UInt8(1), to: &bytes)
            ByteWriter.writeInteger(result.baseOffset, to: &bytes)
            ByteWriter.writeInteger(result.lastOffset, to: &bytes)
            ByteWriter.writeInteger(result.appendTime, to: &bytes)
        }
    }

    /// The offset and state of a snapshot file's bytes.
    static func decode(_ file: [UInt8], into state: inout ReplayState, name: String) throws(FormatError) -> Int64 {
        let (fileVersion, payload) = try ChecksummedFile.decode(file, magic: magic, name: name)
        if fileVersion != version { throw FormatError(.badMagic, "\(name): version \(fileVersion) is not readable") }
        return try withBytes(payload) { (raw) throws(FormatError) -> Int64 in
            var cursor = ByteCursor(raw, context: "snapshot")
            let offset = try cursor.readInteger(Int64.self, "offset")
            for _ in 0..<Int(try cursor.readInteger(UInt32.self, "producer count")) {
                let id = try cursor.readInteger(Int64.self, "producer id")
                var entry = ProducerEntry(epoch: try cursor.readInteger(Int16.self, "epoch"), batches: [], lastAppendTime: try cursor.readInteger(Int64.self, "last append time"))
                for _ in 0..<Int(try cursor.readUInt8("batch count")) { entry.batches.append(try decodeBatch(&cursor)) }
                state.producers[id] = entry
            }
            for _ in 0..<Int(try cursor.readInteger(UInt32.self, "resource count")) {
                let length = Int(try cursor.readInteger(UInt16.self, "resource length"))
                let resource = String(decoding: try cursor.readSlice(length, "resource"), as: UTF8.self)
                state.resources[resource] = ResourceMark(epoch: try cursor.readInteger(Int64.self, "epoch"), seq: try cursor.readInteger(Int64.self, "seq"))
            }
            if cursor.remaining != 0 { throw FormatError(.trailingBytes, "\(name): \(cursor.remaining) bytes after the state") }
            return offset
        }
    }

    private static func decodeBatch(_ cursor: inout ByteCursor) throws(FormatError) -> ProducerBatch {
        let epoch = try cursor.readInteger(Int16.self, "batch epoch")
        let first = try cursor.readInteger(Int32.self, "first sequence")
        let last = try cursor.readInteger(Int32.self, "last sequence")
        let appendTime = try cursor.readInteger(Int64.self, "append time")
        let outcome: AppendOutcome
        switch try cursor.readUInt8("kind") {
        case 1:
            outcome = .committed(AppendResult(
                baseOffset: try cursor.readInteger(Int64.self, "base offset"), lastOffset: try cursor.readInteger(Int64.self, "last offset"),
                appendTime: try cursor.readInteger(Int64.self, "result append time")))
        case 2:
            var refusals: [RecordRefusal] = []
            for _ in 0..<Int(try cursor.readInteger(UInt32.self, "refusal count")) {
                let index = Int(try cursor.readInteger(UInt32.self, "index"))
                guard let reason = RecordRefusal.Reason(rawValue: try cursor.readUInt8("reason")) else { throw FormatError(.badRecord, "unknown refusal reason") }
                let length = Int(try cursor.readInteger(UInt16.self, "message length"))
                refusals.append(RecordRefusal(index: index, reason: reason, message: String(decoding: try cursor.readSlice(length, "message"), as: UTF8.self)))
            }
            outcome = .refused(refusals)
        case let kind:
            throw FormatError(.badRecord, "unknown batch kind \(kind)")
        }
        return ProducerBatch(epoch: epoch, firstSequence: first, lastSequence: last, outcome: outcome, appendTime: appendTime)
    }
}

extension ReplayState {
    /// Adds what one stored batch did: producer state from its header (or, for a refusal
    /// marker, the refusal it records), and resource marks from a flip batch's records.
    mutating func applyStored(_ bytes: [UInt8], header: RecordBatchHeader, isFlipTopic: Bool) throws(FormatError) {
        let isControl = header.attributes.isControl
        let needsRecords = isControl || isFlipTopic
        let batch = needsRecords ? try RecordBatch.decode(bytes, allowingControl: true) : nil
        if header.producerId >= 0 {
            let outcome: AppendOutcome
            var last = lastSequence(header.baseSequence, header.recordCount)
            if isControl, let batch, let marker = try RefusalMarker.decode(batch) {
                outcome = .refused(marker.refusals)
                last = marker.lastSequence
            } else {
                outcome = .committed(AppendResult(baseOffset: header.baseOffset, lastOffset: header.lastOffset, appendTime: header.maxTimestamp))
            }
            applyProducer(id: header.producerId, batch: ProducerBatch(
                epoch: header.producerEpoch, firstSequence: header.baseSequence, lastSequence: last, outcome: outcome, appendTime: header.maxTimestamp))
        }
        if isFlipTopic && !isControl, let batch {
            for record in batch.records {
                guard let key = record.key, let resource = String(validating: key, as: UTF8.self), let value = record.value,
                      let event = try? FlipEvent.decode(key: key, value: value) else { continue }
                resources[resource] = ResourceMark(epoch: event.epoch, seq: event.seq)
            }
        }
    }
}
