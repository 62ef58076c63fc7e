/// The fields of one stored flip event, as views into the batch's bytes (valid only
/// during the call that hands them out).
@frozen
public struct FlipFields {
    public var resource: UnsafeRawBufferPointer
    public var from: UnsafeRawBufferPointer
    public var to: UnsafeRawBufferPointer
    public var actor: UnsafeRawBufferPointer
    public var reason: UnsafeRawBufferPointer
    /// nil when the event gave none (the topic's polarity map decides).
    public var polarity: Int8?
    public var epoch: Int64
    public var seq: Int64
    public var time: Int64

    @inlinable
    public init(
        resource: UnsafeRawBufferPointer, from: UnsafeRawBufferPointer, to: UnsafeRawBufferPointer, actor: UnsafeRawBufferPointer,
        reason: UnsafeRawBufferPointer, polarity: Int8?, epoch: Int64, seq: Int64, time: Int64
    ) {
        self.resource = resource
        self.from = from
        self.to = to
        self.actor = actor
        self.reason = reason
        self.polarity = polarity
        self.epoch = epoch
        self.seq = seq
        self.time = time
    }
}

/// Reads the flip events of a stored batch straight from its bytes, for replays that
/// see every event of months of history: no `Record`, no `String`, no array per record.
/// The batch's CRC was checked by whoever read it from disk; this still checks every
/// length against the bytes, so damaged input is an error, never a wild read.
public enum FlipRecords {
    /// Calls `visit` for each record of `batch` (a whole stored batch; LZ4 or
    /// uncompressed). Control batches hold no events: nothing is visited.
    /// `decompressor`, when given, is reused for LZ4 batches (a replay passes one).
    @inlinable
    public static func forEach(
        batch: UnsafeRawBufferPointer, header: RecordBatchHeader, decompressor: LZ4FrameDecompressor? = nil, _ visit: (FlipFields) throws -> Void
    ) throws {
        if header.attributes.isControl { return }
        let body = UnsafeRawBufferPointer(rebasing: batch[RecordBatchHeader.size...])
        switch header.attributes.compression {
        case .none?:
            try walk(body, count: Int(header.recordCount), visit)
        case .lz4? where decompressor != nil:
            let decompressor = decompressor!
            try decompressor.decompress(body, outputBytesMax: Limits.batchDecompressedBytesMax)
            let count = decompressor.count
            try decompressor.output.withUnsafeBytes { try walk(UnsafeRawBufferPointer(rebasing: $0[..<count]), count: Int(header.recordCount), visit) }
        case .lz4?:
            let plain = try LZ4Frame.decompress(body, outputBytesMax: Limits.batchDecompressedBytesMax)
            try plain.withUnsafeBytes { try walk($0, count: Int(header.recordCount), visit) }
        default:
            throw FormatError(.unsupportedCompression, "compression code \(header.attributes.compressionCode) is not supported (only none and lz4)")
        }
    }

    @inlinable
    static func walk(_ records: UnsafeRawBufferPointer, count: Int, _ visit: (FlipFields) throws -> Void) throws {
        var reader = RawReader(records)
        for _ in 0..<count {
            let length = try reader.varint()
            guard length >= 0 else { throw FormatError(.badRecord, "a record has negative length \(length)") }
            var record = RawReader(try reader.slice(Int(length)))
            _ = try record.byte()  // attributes
            _ = try record.varint()  // timestampDelta
            _ = try record.varint()  // offsetDelta
            let keyLength = try record.varint()
            guard keyLength > 0 else { throw FormatError(.badRecord, "a flip event's record has no key (resource)") }
            let key = try record.slice(Int(keyLength))
            let valueLength = try record.varint()
            guard valueLength > 0 else { throw FormatError(.badRecord, "a flip event's record has no value") }
            var value = RawReader(try record.slice(Int(valueLength)))
            // Headers are not part of a flip event; they are left unread.
            let version = try value.byte()
            guard version == FlipEvent.version else { throw FormatError(.badRecord, "flip event encoding version \(version), expected \(FlipEvent.version)") }
            let flags = try value.byte()
            let polarityByte = Int8(bitPattern: try value.byte())
            let epoch = try value.uvarint()
            let seq = try value.uvarint()
            let time = try value.varint()
            let from = try value.slice(Int(try value.uvarint(limit: UInt64(FlipEvent.stateBytesMax))))
            let to = try value.slice(Int(try value.uvarint(limit: UInt64(FlipEvent.stateBytesMax))))
            let actor = try value.slice(Int(try value.uvarint(limit: UInt64(FlipEvent.textBytesMax))))
            let reason = try value.slice(Int(try value.uvarint(limit: UInt64(FlipEvent.textBytesMax))))
            guard epoch <= UInt64(FlipEvent.integerMax), seq <= UInt64(FlipEvent.integerMax) else {
                throw FormatError(.badRecord, "a flip event's epoch or seq exceeds 2^53-1")
            }
            try visit(FlipFields(
                resource: key, from: from, to: to, actor: actor, reason: reason, polarity: flags & 1 == 1 ? polarityByte : nil,
                epoch: Int64(epoch), seq: Int64(seq), time: time))
        }
    }
}

/// Bounds-checked reads from raw bytes (LEB128 and Kafka's zigzag varints).
@usableFromInline
struct RawReader {
    @usableFromInline let bytes: UnsafeRawBufferPointer
    @usableFromInline var position = 0

    @inlinable
    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    @inlinable @inline(__always)
    mutating func byte() throws -> UInt8 {
        guard position < bytes.count else { throw FormatError(.truncated, "a record ends early") }
        defer { position += 1 }
        return bytes[position]
    }

    @inlinable @inline(__always)
    mutating func uvarint(limit: UInt64 = UInt64.max) throws -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let next = try byte()
            value |= UInt64(next & 0x7F) << shift
            if next & 0x80 == 0 { break }
            shift += 7
            guard shift < 64 else { throw FormatError(.badVarint, "a varint is longer than 10 bytes") }
        }
        guard value <= limit else { throw FormatError(.badRecord, "a length of \(value) exceeds \(limit)") }
        return value
    }

    /// Zigzag-encoded signed varint (Kafka's varint and varlong).
    @inlinable @inline(__always)
    mutating func varint() throws -> Int64 {
        let raw = try uvarint()
        return Int64(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))
    }

    @inlinable @inline(__always)
    mutating func slice(_ count: Int) throws -> UnsafeRawBufferPointer {
        guard count >= 0, count <= bytes.count - position else { throw FormatError(.truncated, "a field of \(count) bytes runs past its record") }
        defer { position += count }
        return UnsafeRawBufferPointer(rebasing: bytes[position..<(position + count)])
    }
}
