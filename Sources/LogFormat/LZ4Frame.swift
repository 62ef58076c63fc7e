import CLZ4

/// LZ4 frames (the LZ4 frame format, magic 0x184D2204) through the system's liblz4, as
/// RecordBatch v2 uses them for compression code 3.
///
/// `compress` writes what Kafka's producer writes: independent blocks of at most 64 KiB,
/// no block checksums, no content size, no content checksum (the batch CRC already covers
/// the compressed bytes). `decompress` reads any single frame liblz4 reads: with or
/// without the content-size field, linked or independent blocks, with or without
/// checksums; it stops at `outputBytesMax` and refuses bytes after the frame's end.
public enum LZ4Frame {
    /// liblz4's fast compressor (what producers use).
    public static let fastLevel: Int32 = 0
    /// liblz4's high-compression (HC) levels: slower to compress, smaller frames, the same
    /// format and decompression speed (for rewriting cold segments).
    public static let highCompressionLevels: ClosedRange<Int32> = 3...12
    /// The HC level liblz4 calls its default.
    public static let highCompressionDefault: Int32 = 9

    /// One frame of `input`, at `level` (`fastLevel`, or one of `highCompressionLevels`).
    public static func compress(_ input: UnsafeRawBufferPointer, level: Int32 = fastLevel) -> [UInt8] {
        precondition(level == fastLevel || highCompressionLevels.contains(level), "LZ4 level \(level) is neither the fast one nor an HC level")
        var preferences = LZ4F_preferences_t()
        preferences.compressionLevel = level
        preferences.frameInfo.blockSizeID = LZ4F_max64KB
        preferences.frameInfo.blockMode = LZ4F_blockIndependent
        preferences.frameInfo.contentChecksumFlag = LZ4F_noContentChecksum
        preferences.frameInfo.blockChecksumFlag = LZ4F_noBlockChecksum
        preferences.frameInfo.contentSize = 0
        let capacity = LZ4F_compressFrameBound(input.count, &preferences)
        return [UInt8](unsafeUninitializedCapacity: capacity) { output, count in
            let written = LZ4F_compressFrame(output.baseAddress, capacity, input.baseAddress, input.count, &preferences)
            precondition(LZ4F_isError(written) == 0, "LZ4F_compressFrame failed: \(String(cString: LZ4F_getErrorName(written)))")
            count = written
        }
    }

    public static func decompress(_ input: UnsafeRawBufferPointer, outputBytesMax: Int) throws(FormatError) -> [UInt8] {
        guard let source = input.baseAddress, input.count > 0 else {
            throw FormatError(.badCompression, "LZ4 frame is empty")
        }
        var context: OpaquePointer?
        let created = LZ4F_createDecompressionContext(&context, UInt32(LZ4F_VERSION))
        guard LZ4F_isError(created) == 0, let context else {
            throw FormatError(.badCompression, "cannot create an LZ4 decompression context")
        }
        defer { LZ4F_freeDecompressionContext(context) }

        var info = LZ4F_frameInfo_t()
        var consumed = input.count
        let hint = LZ4F_getFrameInfo(context, &info, source, &consumed)
        if LZ4F_isError(hint) != 0 {
            throw FormatError(.badCompression, "LZ4 frame header: \(String(cString: LZ4F_getErrorName(hint)))")
        }
        if info.contentSize > UInt64(outputBytesMax) {
            throw FormatError(.limitExceeded, "LZ4 frame declares \(info.contentSize) bytes, more than the limit of \(outputBytesMax)")
        }
        var capacity = info.contentSize > 0 ? Int(info.contentSize) : min(outputBytesMax, max(4096, input.count * 4))
        var output = [UInt8](repeating: 0, count: capacity)
        var produced = 0
        while true {
            var sourceSize = input.count - consumed
            var destinationSize = capacity - produced
            let result = output.withUnsafeMutableBytes { buffer in
                LZ4F_decompress(context, buffer.baseAddress! + produced, &destinationSize, source + consumed, &sourceSize, nil)
            }
            if LZ4F_isError(result) != 0 {
                throw FormatError(.badCompression, "LZ4 data at byte \(consumed): \(String(cString: LZ4F_getErrorName(result)))")
            }
            consumed += sourceSize
            produced += destinationSize
            if result == 0 { break }
            if produced == capacity {
                if capacity >= outputBytesMax {
                    throw FormatError(.limitExceeded, "LZ4 frame expands past the limit of \(outputBytesMax) bytes")
                }
                capacity = min(outputBytesMax, capacity * 2)
                output.append(contentsOf: repeatElement(0, count: capacity - output.count))
            } else if sourceSize == 0 && consumed == input.count {
                throw FormatError(.truncated, "LZ4 frame ends before its end mark")
            }
        }
        if consumed != input.count {
            throw FormatError(.trailingBytes, "\(input.count - consumed) bytes follow the LZ4 frame")
        }
        output.removeLast(output.count - produced)
        return output
    }
}

/// Decompresses frame after frame with one liblz4 context and one output buffer, for
/// readers that go through many batches (a replay): no context, no zero-filled array per
/// batch. Not thread-safe; one per reader.
public final class LZ4FrameDecompressor {
    private var context: OpaquePointer?
    /// The last frame's bytes are `output[..<count]`.
    public private(set) var output: [UInt8] = []
    public private(set) var count = 0

    public init() {
        var context: OpaquePointer?
        let created = LZ4F_createDecompressionContext(&context, UInt32(LZ4F_VERSION))
        precondition(LZ4F_isError(created) == 0 && context != nil, "cannot create an LZ4 decompression context")
        self.context = context
    }

    deinit { LZ4F_freeDecompressionContext(context) }

    /// Decompresses one whole frame into `output`; the same checks as `LZ4Frame.decompress`.
    public func decompress(_ input: UnsafeRawBufferPointer, outputBytesMax: Int) throws(FormatError) {
        guard let source = input.baseAddress, input.count > 0 else { throw FormatError(.badCompression, "LZ4 frame is empty") }
        LZ4F_resetDecompressionContext(context)
        var info = LZ4F_frameInfo_t()
        var consumed = input.count
        let hint = LZ4F_getFrameInfo(context, &info, source, &consumed)
        if LZ4F_isError(hint) != 0 {
            LZ4F_resetDecompressionContext(context)
            throw FormatError(.badCompression, "LZ4 frame header: \(String(cString: LZ4F_getErrorName(hint)))")
        }
        if info.contentSize > UInt64(outputBytesMax) {
            throw FormatError(.limitExceeded, "LZ4 frame declares \(info.contentSize) bytes, more than the limit of \(outputBytesMax)")
        }
        let wanted = info.contentSize > 0 ? Int(info.contentSize) : min(outputBytesMax, max(4096, input.count * 4))
        if output.count < wanted { output = [UInt8](repeating: 0, count: wanted) }
        var produced = 0
        while true {
            var sourceSize = input.count - consumed
            var destinationSize = output.count - produced
            let result = output.withUnsafeMutableBytes { buffer in
                LZ4F_decompress(context, buffer.baseAddress! + produced, &destinationSize, source + consumed, &sourceSize, nil)
            }
            if LZ4F_isError(result) != 0 {
                LZ4F_resetDecompressionContext(context)
                throw FormatError(.badCompression, "LZ4 data at byte \(consumed): \(String(cString: LZ4F_getErrorName(result)))")
            }
            consumed += sourceSize
            produced += destinationSize
            if result == 0 { break }
            if produced == output.count {
                if output.count >= outputBytesMax { throw FormatError(.limitExceeded, "LZ4 frame expands past the limit of \(outputBytesMax) bytes") }
                output.append(contentsOf: repeatElement(0, count: min(outputBytesMax, output.count * 2) - output.count))
            } else if sourceSize == 0 && consumed == input.count {
                throw FormatError(.truncated, "LZ4 frame ends before its end mark")
            }
        }
        if consumed != input.count { throw FormatError(.trailingBytes, "\(input.count - consumed) bytes follow the LZ4 frame") }
        count = produced
    }
}
