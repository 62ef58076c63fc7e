import LogFormat
import LogIO

/// Walks the batches of a segment file in order, from a known batch boundary up to an end
/// position, checking each one as it must be on disk. Recovery, index rebuilds, reads and
/// `lodestone check` all read stored batches through it, so they agree on what a valid
/// stored batch is:
///
/// - the 61-byte header is present and magic is 2;
/// - `batchLength` is sane and the batch ends at or before the end position;
/// - the CRC matches and `recordCount` = `lastOffsetDelta` + 1;
/// - `baseOffset` is the offset after the previous batch (offsets are dense);
/// - the server's stamp is there: partition leader epoch 0, log-append-time bit set,
///   `baseTimestamp` = `maxTimestamp`, never earlier than the previous batch's.
///
/// The fields outside the CRC (baseOffset, batchLength, partitionLeaderEpoch, magic) are
/// each checked against what the log says they must be, so a flipped bit anywhere in a
/// batch makes it invalid.
struct BatchScanner {
    struct Batch {
        var position: Int64
        var header: RecordBatchHeader
        var size: Int { header.totalSize }
        var end: Int64 { position + Int64(header.totalSize) }
    }

    enum Step {
        case batch(Batch)
        /// The end position was reached exactly.
        case end
        /// The bytes at `position` are not a valid batch.
        case invalid(position: Int64, reason: String)
    }

    let file: any StorageFile
    let endPosition: Int64
    private(set) var position: Int64
    /// The base offset the next batch must have; nil accepts any (when starting at a
    /// batch whose offset is not known, to check it alone).
    private(set) var expectedOffset: Int64?
    private(set) var previousTimestamp: Int64
    private let chunkBytes: Int
    private var chunk: [UInt8] = []
    /// Bytes of `chunk` that hold file data from `chunkStart` (the buffer may be larger).
    private var chunkLength = 0
    private var chunkStart: Int64 = 0

    init(file: any StorageFile, from position: Int64, offset: Int64?, endPosition: Int64, previousTimestamp: Int64 = Int64.min, chunkBytes: Int = 1 << 20) {
        self.file = file
        self.position = position
        self.expectedOffset = offset
        self.endPosition = endPosition
        self.previousTimestamp = previousTimestamp
        self.chunkBytes = chunkBytes
    }

    /// The next batch, the end, or the first invalid bytes. I/O errors are thrown.
    mutating func next() throws(IOError) -> Step {
        if position == endPosition { return .end }
        let available = endPosition - position
        if available < Int64(RecordBatchHeader.size) {
            return .invalid(position: position, reason: "\(available) bytes remain, less than a batch header")
        }
        try load(position, count: RecordBatchHeader.size)
        let header: RecordBatchHeader
        do {
            header = try withChunk(position, RecordBatchHeader.size) { (raw) throws(FormatError) in try RecordBatchHeader.read(raw) }
        } catch {
            return .invalid(position: position, reason: error.message)
        }
        if header.batchLength < RecordBatchHeader.batchLengthMin || header.totalSize > Limits.batchBytesMax {
            return .invalid(position: position, reason: "batchLength \(header.batchLength) is outside the allowed range")
        }
        if Int64(header.totalSize) > available {
            return .invalid(position: position, reason: "batch of \(header.totalSize) bytes runs past the end of data at \(endPosition)")
        }
        try load(position, count: header.totalSize)
        do {
            _ = try withChunk(position, header.totalSize) { (raw) throws(FormatError) in try RecordBatchHeader.verify(raw) }
        } catch {
            return .invalid(position: position, reason: error.message)
        }
        if let problem = stampProblem(header) {
            return .invalid(position: position, reason: problem)
        }
        let batch = Batch(position: position, header: header)
        position = batch.end
        expectedOffset = header.nextOffset
        previousTimestamp = header.maxTimestamp
        return .batch(batch)
    }

    /// For readers: the next batch, nil at the end; an invalid batch is a corruption error
    /// naming the file and byte (a reader's range holds only synced data, where nothing can
    /// be torn), so damaged bytes are never returned as data.
    mutating func nextForReader(path: String, context: @autoclosure () -> String) throws(StorageError) -> Batch? {
        let step: Step
        do { step = try next() } catch { throw StorageError.io(error, "reading \(path)") }
        switch step {
        case .end:
            return nil
        case .invalid(let position, let reason):
            throw StorageError.corruption(path, position: position, "invalid batch at byte \(position): \(reason) (\(context()))")
        case .batch(let batch):
            return batch
        }
    }

    /// The bytes of a batch that `next` just returned (a copy).
    func bytes(of batch: Batch) -> [UInt8] {
        let start = Int(batch.position - chunkStart)
        return Array(chunk[start..<(start + batch.size)])
    }

    /// Calls `body` with the bytes of a batch that `next` just returned (no copy).
    func withBatchBytes<R>(_ batch: Batch, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        let start = Int(batch.position - chunkStart)
        return try chunk.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[start..<(start + batch.size)])) }
    }

    /// Appends the bytes of a batch that `next` just returned to `output`.
    func appendBytes(of batch: Batch, to output: inout [UInt8]) {
        let start = Int(batch.position - chunkStart)
        output.append(contentsOf: chunk[start..<(start + batch.size)])
    }

    private func stampProblem(_ header: RecordBatchHeader) -> String? {
        if let expectedOffset, header.baseOffset != expectedOffset {
            return "base offset \(header.baseOffset), expected \(expectedOffset)"
        }
        if header.partitionLeaderEpoch != RecordBatchStamp.partitionLeaderEpoch {
            return "partition leader epoch \(header.partitionLeaderEpoch), expected \(RecordBatchStamp.partitionLeaderEpoch)"
        }
        if header.attributes.timestampType != .logAppendTime || header.baseTimestamp != header.maxTimestamp {
            return "batch at offset \(header.baseOffset) lacks the server's append-time stamp"
        }
        if header.maxTimestamp < previousTimestamp {
            return "append time \(header.maxTimestamp) is before the previous batch's \(previousTimestamp)"
        }
        return nil
    }

    /// Makes sure [start, start + count) is in the chunk, reading from `start` otherwise
    /// (into the same buffer when it is large enough: a scan of a big segment reuses it).
    private mutating func load(_ start: Int64, count: Int) throws(IOError) {
        if start >= chunkStart && start + Int64(count) <= chunkStart + Int64(chunkLength) { return }
        let length = Int(min(endPosition - start, Int64(max(count, chunkBytes))))
        if chunk.count < length { chunk = [UInt8](repeating: 0, count: length) }
        let file = file
        var failure: IOError?
        let read = chunk.withUnsafeMutableBytes { buffer -> Int in
            do throws(IOError) {
                return try file.readFully(into: UnsafeMutableRawBufferPointer(rebasing: buffer[..<length]), at: start)
            } catch {
                failure = error
                return 0
            }
        }
        if let failure { throw failure }
        chunkStart = start
        chunkLength = read
        if read < count {
            // The file is shorter than the end position claims: treat the missing bytes as
            // absent data (zeros would be the same for the checks that follow).
            for index in read..<count { chunk[index] = 0 }
            chunkLength = count
        }
    }

    private func withChunk<R>(_ start: Int64, _ count: Int, _ body: (UnsafeRawBufferPointer) throws(FormatError) -> R) throws(FormatError) -> R {
        let offset = Int(start - chunkStart)
        return try withBytes(chunk) { (raw) throws(FormatError) in
            try body(UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + count)]))
        }
    }
}

/// The end of written data in [from, to) of a file: the position after its last non-zero
/// byte, or `from` when every byte there is zero (design decision 6: for a file with
/// pre-written space, the end of what was written is not the file size). Reads backwards
/// in chunks, so a long zero tail costs one read per MiB.
func endOfWrittenData(_ file: any StorageFile, from: Int64, to: Int64) throws(IOError) -> Int64 {
    var end = to
    while end > from {
        let start = max(from, end - (1 << 20))
        let bytes = try file.read(count: Int(end - start), at: start)
        if let last = bytes.lastIndex(where: { $0 != 0 }) { return start + Int64(last) + 1 }
        end = start
    }
    return from
}
