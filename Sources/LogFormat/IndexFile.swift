/// The bytes of a segment's `.index` and `.timeindex` files. Both are derived state: they
/// can always be rebuilt from the `.log` file, and are rebuilt whenever they are missing,
/// fail their checksum, or disagree with the log.
///
/// Layout, integers big-endian:
///
/// | position | size | field |
/// |---|---|---|
/// | 0 | 4 | magic: "LDXI" (`.index`) or "LDTI" (`.timeindex`) |
/// | 4 | 2 | version = 1 |
/// | 6 | 2 | entry size: 8 (`.index`) or 12 (`.timeindex`) |
/// | 8 | 8 | segment base offset |
/// | 16 | 8 | covered bytes: the index describes the `.log` bytes [0, covered) |
/// | 24 | 8 | next offset: the offset after the last batch in the covered bytes |
/// | 32 | 8 | max timestamp: the last batch's append time in the covered bytes, -1 if none |
/// | 40 | 8 | last batch position in the covered bytes, -1 if none |
/// | 48 | 4 | entry count N |
/// | 52 | N × entry size | entries (`OffsetIndexEntry` or `TimeIndexEntry`) |
/// | 52 + N × size | 4 | CRC-32C of every byte before it |
public struct IndexCoverage: Equatable, Sendable {
    public var baseOffset: Int64
    public var coveredBytes: Int64
    public var nextOffset: Int64
    public var maxTimestamp: Int64
    public var lastBatchPosition: Int64

    public init(baseOffset: Int64, coveredBytes: Int64, nextOffset: Int64, maxTimestamp: Int64, lastBatchPosition: Int64) {
        self.baseOffset = baseOffset
        self.coveredBytes = coveredBytes
        self.nextOffset = nextOffset
        self.maxTimestamp = maxTimestamp
        self.lastBatchPosition = lastBatchPosition
    }

    /// The coverage of an empty segment.
    public static func empty(baseOffset: Int64) -> IndexCoverage {
        IndexCoverage(baseOffset: baseOffset, coveredBytes: 0, nextOffset: baseOffset, maxTimestamp: -1, lastBatchPosition: -1)
    }
}

public enum IndexFile {
    public static let headerSize = 52
    public static let version: UInt16 = 1
    static let offsetMagic: UInt32 = 0x4C44_5849  // "LDXI"
    static let timeMagic: UInt32 = 0x4C44_5449  // "LDTI"

    public static func encode(offsetEntries: [OffsetIndexEntry], coverage: IndexCoverage) -> [UInt8] {
        var bytes = header(magic: offsetMagic, entrySize: OffsetIndexEntry.size, count: offsetEntries.count, coverage: coverage)
        for entry in offsetEntries {
            ByteWriter.writeInteger(entry.relativeOffset, to: &bytes)
            ByteWriter.writeInteger(entry.position, to: &bytes)
        }
        ByteWriter.writeInteger(CRC32C.checksum(bytes), to: &bytes)
        return bytes
    }

    public static func encode(timeEntries: [TimeIndexEntry], coverage: IndexCoverage) -> [UInt8] {
        var bytes = header(magic: timeMagic, entrySize: TimeIndexEntry.size, count: timeEntries.count, coverage: coverage)
        for entry in timeEntries {
            ByteWriter.writeInteger(entry.timestamp, to: &bytes)
            ByteWriter.writeInteger(entry.relativeOffset, to: &bytes)
        }
        ByteWriter.writeInteger(CRC32C.checksum(bytes), to: &bytes)
        return bytes
    }

    public static func decodeOffsetIndex(_ bytes: [UInt8]) throws(FormatError) -> (coverage: IndexCoverage, entries: [OffsetIndexEntry]) {
        try withBytes(bytes) { (raw) throws(FormatError) in
            var cursor = try checkedCursor(raw, magic: offsetMagic, entrySize: OffsetIndexEntry.size, name: "offset index")
            let coverage = try readCoverage(&cursor)
            let count = Int(try cursor.readInteger(UInt32.self, "entry count"))
            try checkCount(count, entrySize: OffsetIndexEntry.size, total: raw.count, name: "offset index")
            var entries: [OffsetIndexEntry] = []
            entries.reserveCapacity(count)
            for _ in 0..<count {
                entries.append(OffsetIndexEntry(
                    relativeOffset: try cursor.readInteger(UInt32.self, "relative offset"),
                    position: try cursor.readInteger(UInt32.self, "position")))
            }
            return (coverage, entries)
        }
    }

    public static func decodeTimeIndex(_ bytes: [UInt8]) throws(FormatError) -> (coverage: IndexCoverage, entries: [TimeIndexEntry]) {
        try withBytes(bytes) { (raw) throws(FormatError) in
            var cursor = try checkedCursor(raw, magic: timeMagic, entrySize: TimeIndexEntry.size, name: "time index")
            let coverage = try readCoverage(&cursor)
            let count = Int(try cursor.readInteger(UInt32.self, "entry count"))
            try checkCount(count, entrySize: TimeIndexEntry.size, total: raw.count, name: "time index")
            var entries: [TimeIndexEntry] = []
            entries.reserveCapacity(count)
            for _ in 0..<count {
                entries.append(TimeIndexEntry(
                    timestamp: try cursor.readInteger(Int64.self, "timestamp"),
                    relativeOffset: try cursor.readInteger(UInt32.self, "relative offset")))
            }
            return (coverage, entries)
        }
    }

    private static func header(magic: UInt32, entrySize: Int, count: Int, coverage: IndexCoverage) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(headerSize + count * entrySize + 4)
        ByteWriter.writeInteger(magic, to: &bytes)
        ByteWriter.writeInteger(version, to: &bytes)
        ByteWriter.writeInteger(UInt16(entrySize), to: &bytes)
        ByteWriter.writeInteger(coverage.baseOffset, to: &bytes)
        ByteWriter.writeInteger(coverage.coveredBytes, to: &bytes)
        ByteWriter.writeInteger(coverage.nextOffset, to: &bytes)
        ByteWriter.writeInteger(coverage.maxTimestamp, to: &bytes)
        ByteWriter.writeInteger(coverage.lastBatchPosition, to: &bytes)
        ByteWriter.writeInteger(UInt32(count), to: &bytes)
        return bytes
    }

    private static func checkedCursor(_ raw: UnsafeRawBufferPointer, magic: UInt32, entrySize: Int, name: StaticString) throws(FormatError) -> ByteCursor {
        if raw.count < headerSize + 4 {
            throw FormatError(.truncated, "\(name) file of \(raw.count) bytes is shorter than its header")
        }
        let stored = UInt32(bigEndian: raw.loadUnaligned(fromByteOffset: raw.count - 4, as: UInt32.self))
        let computed = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[..<(raw.count - 4)]))
        if stored != computed {
            throw FormatError(.checksumMismatch, "\(name) file: stored CRC \(hex(stored)), computed \(hex(computed))")
        }
        var cursor = ByteCursor(raw, context: name)
        if try cursor.readInteger(UInt32.self, "magic") != magic {
            throw FormatError(.badMagic, "\(name) file has the wrong magic number")
        }
        let fileVersion = try cursor.readInteger(UInt16.self, "version")
        let fileEntrySize = try cursor.readInteger(UInt16.self, "entry size")
        if fileVersion != version || Int(fileEntrySize) != entrySize {
            throw FormatError(.badMagic, "\(name) file version \(fileVersion), entry size \(fileEntrySize): expected \(version), \(entrySize)")
        }
        return cursor
    }

    private static func readCoverage(_ cursor: inout ByteCursor) throws(FormatError) -> IndexCoverage {
        IndexCoverage(
            baseOffset: try cursor.readInteger(Int64.self, "base offset"),
            coveredBytes: try cursor.readInteger(Int64.self, "covered bytes"),
            nextOffset: try cursor.readInteger(Int64.self, "next offset"),
            maxTimestamp: try cursor.readInteger(Int64.self, "max timestamp"),
            lastBatchPosition: try cursor.readInteger(Int64.self, "last batch position"))
    }

    private static func checkCount(_ count: Int, entrySize: Int, total: Int, name: StaticString) throws(FormatError) {
        if headerSize + count * entrySize + 4 != total {
            throw FormatError(.badLength, "\(name) file claims \(count) entries but holds \(total) bytes")
        }
    }
}

/// A small file whose whole content is checked: topic configuration, the clean-shutdown
/// marker. Layout, integers big-endian: magic (4 bytes), version (u16), payload length
/// (u32), payload, CRC-32C (u32) of every byte before it.
public enum ChecksummedFile {
    public static let overhead = 14

    public static func encode(magic: UInt32, version: UInt16, payload: [UInt8]) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(overhead + payload.count)
        ByteWriter.writeInteger(magic, to: &bytes)
        ByteWriter.writeInteger(version, to: &bytes)
        ByteWriter.writeInteger(UInt32(payload.count), to: &bytes)
        bytes.append(contentsOf: payload)
        ByteWriter.writeInteger(CRC32C.checksum(bytes), to: &bytes)
        return bytes
    }

    /// The version and payload of a file with the given magic number.
    public static func decode(_ bytes: [UInt8], magic: UInt32, name: String) throws(FormatError) -> (version: UInt16, payload: [UInt8]) {
        try withBytes(bytes) { (raw) throws(FormatError) in
            if raw.count < overhead {
                throw FormatError(.truncated, "\(name): \(raw.count) bytes is shorter than the smallest file")
            }
            // The checks before each read make a cursor error unreachable; the name is in ours.
            var cursor = ByteCursor(raw, context: "checksummed file")
            if try cursor.readInteger(UInt32.self, "magic") != magic {
                throw FormatError(.badMagic, "\(name): wrong magic number")
            }
            let version = try cursor.readInteger(UInt16.self, "version")
            let length = Int(try cursor.readInteger(UInt32.self, "payload length"))
            if length != raw.count - overhead {
                throw FormatError(.badLength, "\(name): payload length \(length) does not match the file's \(raw.count) bytes")
            }
            let payload = Array(try cursor.readSlice(length, "payload"))
            let stored = try cursor.readInteger(UInt32.self, "crc")
            let computed = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[..<(raw.count - 4)]))
            if stored != computed {
                throw FormatError(.checksumMismatch, "\(name): stored CRC \(hex(stored)), computed \(hex(computed))")
            }
            return (version, payload)
        }
    }
}
