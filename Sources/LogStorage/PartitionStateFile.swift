import LogFormat
import LogIO

/// `partition.state`: whether the partition was shut down cleanly, and the group-write
/// size in force while it was open (the torn-tail window recovery must use, whatever the
/// configuration says now).
///
/// A `ChecksummedFile` (magic "LDPS", version 1) whose payload is, big-endian:
/// clean (u8: 1 after a clean shutdown, 0 while open), groupWriteBytesMax (u32),
/// and after a clean shutdown the end of the log: last segment base offset (i64),
/// end position in it (i64), next offset (i64); zeros while open.
///
/// It is written atomically (temporary file, fsync, rename, directory fsync): "open" before
/// the first append is accepted, "clean" as the last step of a clean shutdown.
struct PartitionStateFile: Equatable {
    static let name = "partition.state"
    static let magic: UInt32 = 0x4C44_5053  // "LDPS"
    static let version: UInt16 = 1

    var clean: Bool
    var groupWriteBytesMax: Int
    var lastSegmentBaseOffset: Int64 = 0
    var endPosition: Int64 = 0
    var nextOffset: Int64 = 0

    func encoded() -> [UInt8] {
        var payload: [UInt8] = []
        ByteWriter.writeInteger(UInt8(clean ? 1 : 0), to: &payload)
        ByteWriter.writeInteger(UInt32(groupWriteBytesMax), to: &payload)
        ByteWriter.writeInteger(lastSegmentBaseOffset, to: &payload)
        ByteWriter.writeInteger(endPosition, to: &payload)
        ByteWriter.writeInteger(nextOffset, to: &payload)
        return ChecksummedFile.encode(magic: Self.magic, version: Self.version, payload: payload)
    }

    static func decode(_ bytes: [UInt8]) throws(FormatError) -> PartitionStateFile {
        let (version, payload) = try ChecksummedFile.decode(bytes, magic: magic, name: name)
        if version != Self.version || payload.count != 29 {
            throw FormatError(.badMagic, "\(name): version \(version) with \(payload.count) payload bytes is not readable")
        }
        func integer<T: FixedWidthInteger>(_: T.Type, at index: Int) -> T {
            payload[index..<(index + MemoryLayout<T>.size)].reduce(T.zero) { ($0 << 8) | T($1) }
        }
        return PartitionStateFile(
            clean: payload[0] == 1, groupWriteBytesMax: Int(integer(UInt32.self, at: 1)),
            lastSegmentBaseOffset: integer(Int64.self, at: 5), endPosition: integer(Int64.self, at: 13),
            nextOffset: integer(Int64.self, at: 21))
    }
}
