import XCTest
@testable import LogFormat

final class RecordBatchTests: XCTestCase {
    func sampleBatch(compression: CompressionCodec = .none, count: Int = 5) -> RecordBatch {
        let records = (0..<count).map { index in
            Record(
                timestampDelta: Int64(index * 10), offsetDelta: Int32(index),
                key: Array("resource-\(index % 3)".utf8), value: Array("value \(index) ".utf8) + [UInt8](repeating: 7, count: index),
                headers: index % 2 == 0 ? [RecordHeader(key: "time", value: Array("\(index)".utf8)), RecordHeader(key: "nil", value: nil)] : [])
        }
        return RecordBatch(
            attributes: BatchAttributes(compression: compression), baseTimestamp: 1_764_000_000_000,
            producerId: 9, producerEpoch: 2, baseSequence: 40, records: records)
    }

    func testRoundTripUncompressedAndLZ4() throws {
        for codec in [CompressionCodec.none, .lz4] {
            let batch = sampleBatch(compression: codec, count: 300)
            let bytes = batch.encoded()
            XCTAssertEqual(try RecordBatch.decode(bytes), batch, "\(codec)")
            let header = try RecordBatchValidator.validate(bytes)
            XCTAssertEqual(header.recordCount, 300)
            XCTAssertEqual(header.lastOffsetDelta, 299)
            XCTAssertEqual(header.maxTimestamp, 1_764_000_000_000 + 2990)
        }
    }

    func testStampSetsOnlyWhatTheServerOwnsAndKeepsTheCRCValid() throws {
        var bytes = sampleBatch(compression: .lz4).encoded()
        let before = try RecordBatch.decode(bytes)
        RecordBatchStamp.stamp(&bytes, baseOffset: 1234, appendTime: 1_800_000_000_000)
        let header = try RecordBatchValidator.validate(bytes)
        XCTAssertEqual(header.baseOffset, 1234)
        XCTAssertEqual(header.partitionLeaderEpoch, 0)
        XCTAssertEqual(header.attributes.timestampType, .logAppendTime)
        XCTAssertEqual(header.attributes.compression, .lz4, "compression bits untouched")
        XCTAssertEqual(header.baseTimestamp, 1_800_000_000_000)
        XCTAssertEqual(header.maxTimestamp, 1_800_000_000_000)
        let after = try RecordBatch.decode(bytes)
        XCTAssertEqual(after.records, before.records, "records and their timestamp deltas are never rewritten")
        XCTAssertEqual(after.producerId, before.producerId)
        XCTAssertEqual(after.baseSequence, before.baseSequence)
    }

    func expectFailure(_ bytes: [UInt8], _ code: FormatError.Code, limits: BatchLimits = BatchLimits(), file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try RecordBatchValidator.validate(bytes, limits: limits), file: file, line: line) { error in
            XCTAssertEqual((error as? FormatError)?.code, code, "\(error)", file: file, line: line)
        }
    }

    /// Rewrites header fields and fixes the CRC, to reach checks behind the CRC.
    func withHeader(_ bytes: [UInt8], _ change: (inout [UInt8]) -> Void) -> [UInt8] {
        var copy = bytes
        change(&copy)
        let crc = copy.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[21...])) }
        ByteWriter.setInteger(crc, at: 17, in: &copy)
        return copy
    }

    func testEveryTruncationIsRefused() {
        let bytes = sampleBatch().encoded()
        for length in 0..<bytes.count {
            XCTAssertThrowsError(try RecordBatchValidator.validate(Array(bytes[..<length])), "length \(length)")
        }
    }

    func testEverySingleBitFlipIsDetected() {
        let bytes = sampleBatch().encoded()
        // baseOffset (0..<8) and partitionLeaderEpoch (12..<16) are outside the CRC by
        // Kafka's design; the storage layer checks them against the log instead.
        for index in bytes.indices where !(0..<8).contains(index) && !(12..<16).contains(index) {
            for bit in 0..<8 {
                var flipped = bytes
                flipped[index] ^= 1 << bit
                XCTAssertThrowsError(try RecordBatchValidator.validate(flipped), "byte \(index) bit \(bit)")
            }
        }
    }

    func testBadMagicIsRefused() {
        var bytes = sampleBatch().encoded()
        bytes[16] = 1
        expectFailure(bytes, .badMagic)
    }

    func testChecksumMismatchNamesStoredAndComputed() {
        var bytes = sampleBatch().encoded()
        bytes[bytes.count - 1] ^= 0x40
        XCTAssertThrowsError(try RecordBatchValidator.validate(bytes)) { error in
            let formatError = error as? FormatError
            XCTAssertEqual(formatError?.code, .checksumMismatch)
            XCTAssertTrue(formatError?.message.contains("stored CRC") ?? false)
        }
    }

    func testOffsetDeltasMustBeDense() {
        var batch = sampleBatch()
        batch.records[2].offsetDelta = 3
        batch.records[3].offsetDelta = 2
        expectFailure(batch.encoded(), .badRecord)
    }

    func testRecordCountMustMatchLastOffsetDelta() {
        let bytes = withHeader(sampleBatch().encoded()) { ByteWriter.setInteger(Int32(9), at: 23, in: &$0) }
        expectFailure(bytes, .badLength)
    }

    /// Docs/format.md: attribute bits 6 to 15 are 0, record attributes are 0, and a batch
    /// without a producer id has no epoch or sequence either.
    func testBitsAndFieldsLodestoneDoesNotUseMustBeZeroOrNone() throws {
        for bits: Int16 in [0x40, 0x80, 0x100, Int16(bitPattern: 0x8000)] {
            let bytes = withHeader(sampleBatch().encoded()) { ByteWriter.setInteger(bits, at: 21, in: &$0) }
            expectFailure(bytes, .badRecord)
        }
        var withRecordAttributes = sampleBatch()
        withRecordAttributes.records[3].attributes = 1
        expectFailure(withRecordAttributes.encoded(), .badRecord)
        for (epoch, sequence): (Int16, Int32) in [(0, -1), (-1, 0), (2, 40)] {
            var anonymous = sampleBatch()
            anonymous.producerId = -1
            anonymous.producerEpoch = epoch
            anonymous.baseSequence = sequence
            expectFailure(anonymous.encoded(), .badRecord)
        }
        var plain = sampleBatch()
        plain.producerId = -1
        plain.producerEpoch = -1
        plain.baseSequence = -1
        XCTAssertNoThrow(try RecordBatchValidator.validate(plain.encoded()), "no producer: -1, -1, -1")
    }

    func testUnsupportedCompressionIsRefused() {
        let bytes = withHeader(sampleBatch().encoded()) { ByteWriter.setInteger(Int16(1), at: 21, in: &$0) }
        expectFailure(bytes, .unsupportedCompression)
    }

    func testTransactionalBatchesAreRefused() {
        let bytes = withHeader(sampleBatch().encoded()) { ByteWriter.setInteger(Int16(0x10), at: 21, in: &$0) }
        expectFailure(bytes, .badRecord)
    }

    func testTrailingBytesAfterRecordsAreRefused() {
        var bytes = sampleBatch().encoded() + [0]
        let length = Int32(bytes.count - 12)
        bytes = withHeader(bytes) { ByteWriter.setInteger(length, at: 8, in: &$0) }
        expectFailure(bytes, .trailingBytes)
    }

    func testLimitsAreEnforced() {
        let bytes = sampleBatch(count: 50).encoded()
        expectFailure(bytes, .limitExceeded, limits: BatchLimits(batchBytesMax: bytes.count - 1))
        expectFailure(bytes, .limitExceeded, limits: BatchLimits(recordCountMax: 49))
    }

    /// A tiny LZ4 batch that expands to more than the decompression limit is refused
    /// without allocating what it claims.
    func testDecompressionBombIsRefused() {
        let bomb = RecordBatch(
            attributes: BatchAttributes(compression: .lz4), baseTimestamp: 0,
            records: [Record(key: nil, value: [UInt8](repeating: 0, count: 4 << 20))])
        let bytes = bomb.encoded()
        XCTAssertLessThan(bytes.count, 64 << 10)
        expectFailure(bytes, .limitExceeded, limits: BatchLimits(decompressedBytesMax: 1 << 20))
    }

    func testHeaderKeysMustBeUTF8() {
        var bytes = RecordBatch(baseTimestamp: 0, records: [Record(key: nil, value: [1], headers: [RecordHeader(key: "ab", value: nil)])]).encoded()
        let index = bytes.lastIndex(of: UInt8(ascii: "a"))!
        bytes[index] = 0xFF
        bytes = withHeader(bytes) { _ in }
        expectFailure(bytes, .badRecord)
    }
}
