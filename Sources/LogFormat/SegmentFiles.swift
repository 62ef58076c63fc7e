/// Names of a partition's files. A segment is named by its base offset, written as 20
/// decimal digits with leading zeros (so names sort as offsets do), with the extensions
/// `.log` (batches), `.index` (sparse offset index) and `.timeindex` (sparse time index).
public enum SegmentFileName {
    public enum Kind: String, CaseIterable, Sendable {
        case log
        case index
        case timeIndex = "timeindex"
        /// A sealed flip segment's summary: its resources and event times (derived).
        case summary
    }

    public static let digitCount = 20

    public static func name(baseOffset: Int64, kind: Kind) -> String {
        precondition(baseOffset >= 0, "offsets are not negative")
        let digits = String(baseOffset)
        return String(repeating: "0", count: digitCount - digits.count) + digits + "." + kind.rawValue
    }

    /// The base offset and kind a file name stands for; nil for names of other files.
    public static func parse(_ name: String) -> (baseOffset: Int64, kind: Kind)? {
        let utf8 = Array(name.utf8)
        guard utf8.count > digitCount + 1, utf8[digitCount] == UInt8(ascii: ".") else { return nil }
        guard let kind = Kind(rawValue: String(decoding: utf8[(digitCount + 1)...], as: UTF8.self)) else { return nil }
        var value: Int64 = 0
        for byte in utf8[..<digitCount] {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            let (shifted, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = shifted.addingReportingOverflow(Int64(byte - UInt8(ascii: "0")))
            if overflow1 || overflow2 { return nil }
            value = sum
        }
        return (value, kind)
    }
}

/// An entry of a segment's offset index: the batch whose base offset is
/// `segmentBase + relativeOffset` starts at byte `position` of the `.log` file.
/// Stored as 8 bytes: relativeOffset (u32, big-endian), position (u32, big-endian).
public struct OffsetIndexEntry: Equatable, Sendable {
    public static let size = 8
    public var relativeOffset: UInt32
    public var position: UInt32

    public init(relativeOffset: UInt32, position: UInt32) {
        self.relativeOffset = relativeOffset
        self.position = position
    }
}

/// An entry of a segment's time index: the batch whose base offset is
/// `segmentBase + relativeOffset` has append time `timestamp`, and no earlier batch of the
/// partition has a later one (append times never decrease within a partition).
/// Stored as 12 bytes: timestamp (i64, big-endian), relativeOffset (u32, big-endian).
public struct TimeIndexEntry: Equatable, Sendable {
    public static let size = 12
    public var timestamp: Int64
    public var relativeOffset: UInt32

    public init(timestamp: Int64, relativeOffset: UInt32) {
        self.timestamp = timestamp
        self.relativeOffset = relativeOffset
    }
}
