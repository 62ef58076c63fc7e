import CCRC32C

/// CRC-32C (Castagnoli), the checksum of RecordBatch v2 and of every Lodestone file.
///
/// `checksum` uses the SSE4.2 instruction when the processor has it (three interleaved
/// streams) and a slicing-by-8 table otherwise; the choice is made once, at first use.
/// `update` continues a checksum over more bytes: `update(checksum(a), b)` equals the
/// checksum of `a` followed by `b`.
public enum CRC32C {
    public enum Implementation: String, Sendable {
        case hardware
        case software
    }

    /// The implementation `checksum` uses on this processor.
    public static var implementation: Implementation {
        lodestone_crc32c_hardware_available() == 1 ? .hardware : .software
    }

    @inlinable
    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        update(0, bytes)
    }

    @inlinable
    public static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0) }
    }

    @inlinable
    public static func update(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress else { return crc }
        return lodestone_crc32c(crc, base, bytes.count)
    }

    /// The checksum by a chosen implementation; for tests and benchmarks.
    public static func checksum(_ bytes: UnsafeRawBufferPointer, using implementation: Implementation) -> UInt32 {
        guard let base = bytes.baseAddress else { return 0 }
        switch implementation {
        case .hardware:
            precondition(self.implementation == .hardware, "this processor has no CRC32 instruction")
            return lodestone_crc32c_hardware(0, base, bytes.count)
        case .software:
            return lodestone_crc32c_software(0, base, bytes.count)
        }
    }
}
