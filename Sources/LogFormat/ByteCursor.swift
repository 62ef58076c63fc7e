/// Reads big-endian integers and Kafka varints from a byte buffer, front to back,
/// checking bounds before every read. Reading consumes (`position` moves); `get`
/// functions elsewhere read at an index without moving, as in SwiftNIO.
public struct ByteCursor {
    @usableFromInline let bytes: UnsafeRawBufferPointer
    public var position: Int
    /// What is being read, for error messages ("record 3", "batch header"): a name and an
    /// optional index, joined only when an error message is built.
    @usableFromInline let contextName: StaticString
    @usableFromInline let contextIndex: Int?

    @inlinable
    public init(_ bytes: UnsafeRawBufferPointer, position: Int = 0, context: StaticString, index: Int? = nil) {
        self.bytes = bytes
        self.position = position
        self.contextName = context
        self.contextIndex = index
    }

    public func context() -> String {
        contextIndex.map { "\(contextName) \($0)" } ?? "\(contextName)"
    }

    @inlinable public var remaining: Int { bytes.count - position }

    /// Field names are autoclosures: they are built only for an error message, never on
    /// the path of valid data.
    @inlinable
    public func require(_ count: Int, _ field: @autoclosure () -> String) throws(FormatError) {
        if count < 0 || count > remaining {
            throw FormatError(.truncated, "\(context()): \(field()) needs \(count) bytes at position \(position), \(remaining) remain")
        }
    }

    @inlinable
    public mutating func readUInt8(_ field: @autoclosure () -> String) throws(FormatError) -> UInt8 {
        try require(1, field())
        defer { position += 1 }
        return bytes[position]
    }

    @inlinable
    public mutating func readInteger<T: FixedWidthInteger>(_: T.Type, _ field: @autoclosure () -> String) throws(FormatError) -> T {
        let size = MemoryLayout<T>.size
        try require(size, field())
        defer { position += size }
        return T(bigEndian: bytes.loadUnaligned(fromByteOffset: position, as: T.self))
    }

    /// Reads `count` bytes without copying.
    @inlinable
    public mutating func readSlice(_ count: Int, _ field: @autoclosure () -> String) throws(FormatError) -> UnsafeRawBufferPointer {
        try require(count, field())
        defer { position += count }
        return UnsafeRawBufferPointer(rebasing: bytes[position..<(position + count)])
    }

    /// An unsigned LEB128 varint of at most 5 bytes (32 bits).
    @inlinable
    public mutating func readUnsignedVarint(_ field: @autoclosure () -> String) throws(FormatError) -> UInt32 {
        var result: UInt32 = 0
        var shift: UInt32 = 0
        while true {
            let byte = try readUInt8(field())
            if shift == 28 && byte > 0x0F {
                throw FormatError(.badVarint, "\(context()): \(field()) varint is longer than 32 bits at position \(position - 1)")
            }
            result |= UInt32(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
    }

    /// An unsigned LEB128 varint of at most 10 bytes (64 bits).
    @inlinable
    public mutating func readUnsignedVarlong(_ field: @autoclosure () -> String) throws(FormatError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let byte = try readUInt8(field())
            if shift == 63 && byte > 0x01 {
                throw FormatError(.badVarint, "\(context()): \(field()) varlong is longer than 64 bits at position \(position - 1)")
            }
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
    }

    /// A zigzag-encoded signed varint (Kafka's `varint`).
    @inlinable
    public mutating func readVarint(_ field: @autoclosure () -> String) throws(FormatError) -> Int32 {
        let raw = try readUnsignedVarint(field())
        return Int32(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))
    }

    /// A zigzag-encoded signed varlong (Kafka's `varlong`).
    @inlinable
    public mutating func readVarlong(_ field: @autoclosure () -> String) throws(FormatError) -> Int64 {
        let raw = try readUnsignedVarlong(field())
        return Int64(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))
    }
}

/// Appends big-endian integers and Kafka varints to a byte array.
public enum ByteWriter {
    @inlinable
    public static func writeInteger<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }

    @inlinable
    public static func setInteger<T: FixedWidthInteger>(_ value: T, at index: Int, in bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.bigEndian) { raw in
            for i in 0..<raw.count { bytes[index + i] = raw[i] }
        }
    }

    @inlinable
    public static func writeUnsignedVarint(_ value: UInt64, to bytes: inout [UInt8]) {
        var rest = value
        while rest >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: rest) | 0x80)
            rest >>= 7
        }
        bytes.append(UInt8(rest))
    }

    /// Kafka's zigzag `varint` (for 32-bit values) and `varlong` share this encoding.
    @inlinable
    public static func writeVarint(_ value: Int64, to bytes: inout [UInt8]) {
        let zigzag = UInt64(bitPattern: (value << 1) ^ (value >> 63))
        writeUnsignedVarint(zigzag, to: &bytes)
    }

    /// Bytes that `writeVarint` uses for `value`.
    @inlinable
    public static func varintSize(_ value: Int64) -> Int {
        var zigzag = UInt64(bitPattern: (value << 1) ^ (value >> 63))
        var size = 1
        while zigzag >= 0x80 {
            zigzag >>= 7
            size += 1
        }
        return size
    }
}

/// `withUnsafeBytes` for a body with a typed error (the standard library's
/// `Array.withUnsafeBytes` rethrows untyped errors).
@inlinable
func withBytes<R, E: Error>(_ bytes: [UInt8], _ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
    let result = bytes.withUnsafeBytes { raw in
        Result { () throws(E) -> R in try body(raw) }
    }
    return try result.get()
}
