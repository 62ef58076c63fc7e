import Foundation
import XCTest
@testable import LogFormat

/// Batches built by kafka-python (Tools/fixtures/make_kafka_batches.py), decoded with our
/// codec and compared field by field with what the script fed the builder.
final class KafkaGoldenVectorTests: XCTestCase {
    static func fixture(_ name: String, _ ext: String) throws -> Data {
        let url = try XCTUnwrap(Bundle.module.url(forResource: name, withExtension: ext, subdirectory: "Fixtures"), "fixture \(name).\(ext)")
        return try Data(contentsOf: url)
    }

    struct Expected: Decodable {
        struct Record: Decodable {
            var offsetDelta: Int32
            var timestampDelta: Int64
            var key: String?
            var value: String?
            var headers: [[String?]]
        }
        var compression: UInt8
        var producerId: Int64
        var producerEpoch: Int16
        var baseSequence: Int32
        var baseTimestamp: Int64
        var maxTimestamp: Int64
        var records: [Record]
    }

    func checkFixture(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let bytes = [UInt8](try Self.fixture(name, "bin"))
        let expected = try JSONDecoder().decode(Expected.self, from: try Self.fixture(name, "json"))
        let header = try bytes.withUnsafeBytes { try RecordBatchHeader.verify($0) }
        XCTAssertEqual(header.magic, 2, file: file, line: line)
        XCTAssertEqual(header.baseOffset, 0, file: file, line: line)
        XCTAssertEqual(header.partitionLeaderEpoch, 0, "kafka-python leaves the leader epoch to the broker", file: file, line: line)
        XCTAssertEqual(header.totalSize, bytes.count, file: file, line: line)
        XCTAssertEqual(header.attributes.compression?.rawValue, expected.compression, file: file, line: line)
        XCTAssertEqual(header.attributes.timestampType, .createTime, file: file, line: line)
        XCTAssertEqual(header.recordCount, Int32(expected.records.count), file: file, line: line)

        let batch = try RecordBatch.decode(bytes)
        XCTAssertEqual(batch.producerId, expected.producerId, file: file, line: line)
        XCTAssertEqual(batch.producerEpoch, expected.producerEpoch, file: file, line: line)
        XCTAssertEqual(batch.baseSequence, expected.baseSequence, file: file, line: line)
        XCTAssertEqual(batch.baseTimestamp, expected.baseTimestamp, file: file, line: line)
        XCTAssertEqual(batch.maxTimestamp, expected.maxTimestamp, file: file, line: line)
        XCTAssertEqual(batch.records.count, expected.records.count, file: file, line: line)
        for (record, want) in zip(batch.records, expected.records) {
            XCTAssertEqual(record.offsetDelta, want.offsetDelta, file: file, line: line)
            XCTAssertEqual(record.timestampDelta, want.timestampDelta, file: file, line: line)
            XCTAssertEqual(record.key, want.key.map { [UInt8](Data(base64Encoded: $0)!) }, file: file, line: line)
            XCTAssertEqual(record.value, want.value.map { [UInt8](Data(base64Encoded: $0)!) }, file: file, line: line)
            XCTAssertEqual(record.headers.count, want.headers.count, file: file, line: line)
            for (header, pair) in zip(record.headers, want.headers) {
                XCTAssertEqual(header.key, pair[0], file: file, line: line)
                XCTAssertEqual(header.value, pair[1].map { [UInt8](Data(base64Encoded: $0)!) }, file: file, line: line)
            }
        }
    }

    func testUncompressedKafkaBatchDecodesFieldByField() throws {
        try checkFixture("kafka-python-none")
        try checkFixture("kafka-python-none-single")
    }

    func testLZ4KafkaBatchWithContentSizeDecodesFieldByField() throws {
        try checkFixture("kafka-python-lz4")
    }

    func testLZ4KafkaBatchOfSeveralBlocksDecodesFieldByField() throws {
        try checkFixture("kafka-python-lz4-multiblock")
        let bytes = [UInt8](try Self.fixture("kafka-python-lz4-multiblock", "bin"))
        let plain = try bytes.withUnsafeBytes {
            try LZ4Frame.decompress(UnsafeRawBufferPointer(rebasing: $0[RecordBatchHeader.size...]), outputBytesMax: 16 << 20)
        }
        XCTAssertGreaterThan(plain.count, 3 * 65536, "the fixture must span several 64 KiB blocks")
    }

    /// Our encoder, fed what kafka-python was fed, writes the same bytes: same field order,
    /// same varints, same CRC.
    func testOurEncoderReproducesKafkaBytesExactly() throws {
        for name in ["kafka-python-none", "kafka-python-none-single"] {
            let golden = [UInt8](try Self.fixture(name, "bin"))
            var batch = try RecordBatch.decode(golden)
            batch.partitionLeaderEpoch = 0
            XCTAssertEqual(batch.encoded(), golden, name)
        }
    }

    /// LZ4 output is not unique, so for compressed batches the check is that our frame
    /// decodes to the same records and carries Kafka's frame descriptor: independent
    /// 64 KiB blocks, no content size, no checksums.
    func testOurLZ4BatchDecodesToTheSameRecordsWithKafkasFrameDescriptor() throws {
        let golden = try RecordBatch.decode([UInt8](try Self.fixture("kafka-python-lz4", "bin")))
        let ours = golden.encoded()
        XCTAssertEqual(try RecordBatch.decode(ours), golden)
        let frame = Array(ours[RecordBatchHeader.size...])
        XCTAssertEqual(Array(frame[0..<4]), [0x04, 0x22, 0x4D, 0x18], "LZ4 frame magic")
        XCTAssertEqual(frame[4], 0x60, "FLG: version 01, independent blocks, no checksums, no content size")
        XCTAssertEqual(frame[5], 0x40, "BD: 64 KiB blocks")
    }
}
