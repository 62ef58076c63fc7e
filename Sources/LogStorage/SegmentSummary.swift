import LogFormat
import LogIO

/// What a sealed segment of a flip topic holds, in a small file beside it
/// (`<base>.summary`, Docs/format.md): its resources, as an exact sorted list when that is
/// small and as a Bloom filter otherwise, and the range of its events' times. A replay for
/// some resources skips segments that hold none of them and still learns the topic's
/// horizon (the largest event time) from the summary.
///
/// Derived from the log, so not synced and not trusted blindly: a CRC covers the file, and
/// a missing, torn or unreadable summary only means the segment is read in full. A segment
/// that was the active one across a restart gets no summary (its first part was appended
/// before the builder existed).
public struct SegmentSummary: Sendable, Equatable {
    public var eventCount: Int64
    public var eventTimeMin: Int64
    public var eventTimeMax: Int64
    public var resourceCount: Int
    /// The resources, sorted bytewise, when the list is small.
    public var resources: [String]?
    /// Otherwise a Bloom filter over every resource and every prefix of it that ends
    /// before a "/", so prefix queries can ask it too.
    var bloom: BloomFilter?

    public static let magic: [UInt8] = Array("LDSM".utf8)
    public static let version: UInt8 = 1
    /// Above this many bytes of names, the summary keeps a Bloom filter instead of the list.
    public static let exactBytesMax = Limits.segmentSummaryExactBytesMax
    public static let fileBytesMax = Limits.segmentSummaryFileBytesMax

    /// Whether the segment may hold `resource` (false: it certainly does not).
    public func mayContain(resource: String) -> Bool {
        if let resources { return Self.search(resources, resource) }
        return bloom?.mayContain(Array(resource.utf8)) ?? true
    }

    /// Whether the segment may hold `prefix` or a resource under `prefix/`.
    public func mayContain(prefix: String) -> Bool {
        if let resources {
            let under = prefix + "/"
            return Self.search(resources, prefix) || resources.contains { $0.utf8.starts(with: under.utf8) }
        }
        return bloom?.mayContain(Array(prefix.utf8)) ?? true
    }

    private static func search(_ sorted: [String], _ wanted: String) -> Bool {
        var low = 0
        var high = sorted.count
        let key = Array(wanted.utf8)
        while low < high {
            let middle = (low + high) / 2
            if sorted[middle].utf8.lexicographicallyPrecedes(key) { low = middle + 1 } else { high = middle }
        }
        return low < sorted.count && sorted[low].utf8.elementsEqual(key)
    }

    // MARK: File

    public func encoded() -> [UInt8] {
        var bytes = Self.magic
        bytes.append(Self.version)
        bytes.append(resources != nil ? 0 : 1)
        ByteWriter.writeInteger(eventCount, to: &bytes)
        ByteWriter.writeInteger(eventTimeMin, to: &bytes)
        ByteWriter.writeInteger(eventTimeMax, to: &bytes)
        ByteWriter.writeInteger(UInt32(resourceCount), to: &bytes)
        if let resources {
            for resource in resources {
                ByteWriter.writeInteger(UInt16(resource.utf8.count), to: &bytes)
                bytes.append(contentsOf: resource.utf8)
            }
        } else if let bloom {
            ByteWriter.writeInteger(UInt32(bloom.bitCount), to: &bytes)
            bytes.append(UInt8(bloom.hashCount))
            bytes.append(contentsOf: bloom.bits)
        }
        ByteWriter.writeInteger(CRC32C.checksum(bytes), to: &bytes)
        return bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(FormatError) -> SegmentSummary {
        guard bytes.count >= 4 + 2 + 24 + 4 + 4 else { throw FormatError(.truncated, "a segment summary of \(bytes.count) bytes is too short") }
        let stored = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: bytes.count - 4, as: UInt32.self).bigEndian }
        guard CRC32C.checksum(Array(bytes[..<(bytes.count - 4)])) == stored else { throw FormatError(.checksumMismatch, "the segment summary's CRC does not match") }
        return try withBytes(Array(bytes[..<(bytes.count - 4)])) { (raw) throws(FormatError) -> SegmentSummary in
            var cursor = ByteCursor(raw, context: "segment summary")
            guard Array(try cursor.readSlice(4, "magic")) == magic else { throw FormatError(.badMagic, "not a segment summary") }
            let version = try cursor.readUInt8("version")
            guard version == Self.version else { throw FormatError(.badMagic, "segment summary version \(version), expected \(Self.version)") }
            let kind = try cursor.readUInt8("kind")
            var summary = SegmentSummary(
                eventCount: try cursor.readInteger(Int64.self, "eventCount"), eventTimeMin: try cursor.readInteger(Int64.self, "eventTimeMin"),
                eventTimeMax: try cursor.readInteger(Int64.self, "eventTimeMax"), resourceCount: Int(try cursor.readInteger(UInt32.self, "resourceCount")))
            switch kind {
            case 0:
                var resources: [String] = []
                for _ in 0..<summary.resourceCount {
                    let length = Int(try cursor.readInteger(UInt16.self, "resource length"))
                    resources.append(String(decoding: try cursor.readSlice(length, "resource"), as: UTF8.self))
                }
                summary.resources = resources
            case 1:
                let bitCount = Int(try cursor.readInteger(UInt32.self, "bitCount"))
                let hashCount = Int(try cursor.readUInt8("hashCount"))
                guard bitCount > 0, hashCount > 0 else { throw FormatError(.inconsistent, "a Bloom filter of \(bitCount) bits and \(hashCount) hashes") }
                summary.bloom = BloomFilter(bitCount: bitCount, hashCount: hashCount, bits: Array(try cursor.readSlice((bitCount + 7) / 8, "bits")))
            default:
                throw FormatError(.inconsistent, "segment summary kind \(kind)")
            }
            guard cursor.remaining == 0 else { throw FormatError(.trailingBytes, "\(cursor.remaining) bytes after the segment summary") }
            return summary
        }
    }

    public static func path(directory: String, baseOffset: Int64) -> String {
        joinPath(directory, SegmentFileName.name(baseOffset: baseOffset, kind: .summary))
    }

    /// The summary beside a segment, nil when there is none or it cannot be trusted.
    public static func read(directory: String, baseOffset: Int64, fileIO: any FileIO) -> SegmentSummary? {
        let path = path(directory: directory, baseOffset: baseOffset)
        guard fileIO.exists(path), let bytes = try? fileIO.readWholeFile(path, bytesMax: fileBytesMax) else { return nil }
        return try? decode(bytes)
    }
}

/// Collects the summary of the active segment as its batches are written.
struct SegmentSummaryBuilder {
    var resources = Set<String>()
    var eventCount: Int64 = 0
    var eventTimeMin = Int64.max
    var eventTimeMax = Int64.min

    mutating func add(_ effects: AppendEffects) {
        guard effects.eventCount > 0 else { return }
        for (resource, _) in effects.resources { resources.insert(resource) }
        eventCount += effects.eventCount
        eventTimeMin = min(eventTimeMin, effects.eventTimeMin)
        eventTimeMax = max(eventTimeMax, effects.eventTimeMax)
    }

    /// The summary, nil for a segment without flip events.
    func summary() -> SegmentSummary? {
        guard eventCount > 0 else { return nil }
        let sorted = resources.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        var summary = SegmentSummary(eventCount: eventCount, eventTimeMin: eventTimeMin, eventTimeMax: eventTimeMax, resourceCount: sorted.count)
        if sorted.reduce(0, { $0 + 2 + $1.utf8.count }) <= SegmentSummary.exactBytesMax {
            summary.resources = sorted
        } else {
            var keys: [[UInt8]] = []
            for resource in sorted {
                let bytes = Array(resource.utf8)
                for (index, byte) in bytes.enumerated() where byte == UInt8(ascii: "/") { keys.append(Array(bytes[..<index])) }
                keys.append(bytes)
            }
            var bloom = BloomFilter(keyCount: keys.count)
            for key in keys { bloom.insert(key) }
            summary.bloom = bloom
        }
        return summary
    }
}

/// A Bloom filter with about 1% false positives: 10 bits and 7 hashes per key, positions
/// by double hashing of murmur2 (Kafka's partitioner hash) and CRC-32C of the key.
struct BloomFilter: Equatable, Sendable {
    var bitCount: Int
    var hashCount: Int
    var bits: [UInt8]

    init(keyCount: Int) {
        bitCount = max(64, keyCount * 10)
        hashCount = 7
        bits = [UInt8](repeating: 0, count: (bitCount + 7) / 8)
    }

    init(bitCount: Int, hashCount: Int, bits: [UInt8]) {
        self.bitCount = bitCount
        self.hashCount = hashCount
        self.bits = bits
    }

    private func positions(_ key: [UInt8]) -> [Int] {
        let h1 = UInt64(UInt32(bitPattern: Partitioner.murmur2(key)))
        let h2 = UInt64(CRC32C.checksum(key)) | 1
        return (0..<hashCount).map { Int((h1 &+ UInt64($0) &* h2) % UInt64(bitCount)) }
    }

    mutating func insert(_ key: [UInt8]) {
        for position in positions(key) { bits[position / 8] |= 1 << UInt8(position % 8) }
    }

    func mayContain(_ key: [UInt8]) -> Bool {
        positions(key).allSatisfy { bits[$0 / 8] & (1 << UInt8($0 % 8)) != 0 }
    }
}

