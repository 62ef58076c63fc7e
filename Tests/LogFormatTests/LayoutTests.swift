import Foundation
import XCTest
@testable import LogFormat

final class PartitionerTests: XCTestCase {
    /// Values of Kafka's `Utils.murmur2`, confirmed with kafka-python's murmur2.
    func testMurmur2MatchesKafka() {
        let cases: [(String, Int32)] = [
            ("1", -1_993_445_489), ("12", 126_087_238), ("123", -267_702_483), ("1234", -1_614_185_708),
            ("12345", -1_188_365_604), ("hello", 2_132_663_229), ("prod/eu-1/payments/leader", 1_675_363_683), ("", 275_646_681),
        ]
        for (key, expected) in cases {
            XCTAssertEqual(Partitioner.murmur2(Array(key.utf8)), expected, key)
        }
    }

    func testPartitionIsPositiveMurmur2ModuloCount() {
        XCTAssertEqual(Partitioner.partition(forKey: Array("1".utf8), partitionCount: 12), 3)
        XCTAssertEqual(Partitioner.partition(forKey: Array("12345".utf8), partitionCount: 12), 8)
        XCTAssertEqual(Partitioner.partition(forKey: Array("prod/eu-1/payments/leader".utf8), partitionCount: 12), 3)
        for count in 1...64 {
            let partition = Partitioner.partition(forKey: Array("key-\(count)".utf8), partitionCount: count)
            XCTAssertTrue((0..<count).contains(partition))
        }
    }
}

final class SegmentFileNameTests: XCTestCase {
    func testNamesAreTwentyDigitsAndParseBack() {
        XCTAssertEqual(SegmentFileName.name(baseOffset: 0, kind: .log), "00000000000000000000.log")
        XCTAssertEqual(SegmentFileName.name(baseOffset: 1234, kind: .timeIndex), "00000000000000001234.timeindex")
        XCTAssertEqual(SegmentFileName.name(baseOffset: Int64.max, kind: .index), "09223372036854775807.index")
        for offset: Int64 in [0, 1, 99, 1 << 40, Int64.max] {
            for kind in SegmentFileName.Kind.allCases {
                let parsed = SegmentFileName.parse(SegmentFileName.name(baseOffset: offset, kind: kind))
                XCTAssertEqual(parsed?.baseOffset, offset)
                XCTAssertEqual(parsed?.kind, kind)
            }
        }
    }

    func testOtherNamesAreNotSegments() {
        for name in ["recovery-point", "0000000000000000000.log", "000000000000000000000.log", "0000000000000000000a.log",
                     "00000000000000000000.logx", "00000000000000000000", "99999999999999999999.log", ".lock"] {
            XCTAssertNil(SegmentFileName.parse(name), name)
        }
    }
}

final class IndexFileTests: XCTestCase {
    let coverage = IndexCoverage(baseOffset: 500, coveredBytes: 123_456, nextOffset: 900, maxTimestamp: 1_764_000_000_000, lastBatchPosition: 120_000)

    func testOffsetAndTimeIndexesRoundTrip() throws {
        let offsets = (0..<100).map { OffsetIndexEntry(relativeOffset: UInt32($0 * 4), position: UInt32($0 * 4096)) }
        let times = (0..<100).map { TimeIndexEntry(timestamp: 1_764_000_000_000 + Int64($0), relativeOffset: UInt32($0 * 4)) }
        let offsetBytes = IndexFile.encode(offsetEntries: offsets, coverage: coverage)
        let timeBytes = IndexFile.encode(timeEntries: times, coverage: coverage)
        XCTAssertEqual(offsetBytes.count, IndexFile.headerSize + 100 * 8 + 4)
        XCTAssertEqual(timeBytes.count, IndexFile.headerSize + 100 * 12 + 4)
        let decodedOffsets = try IndexFile.decodeOffsetIndex(offsetBytes)
        XCTAssertEqual(decodedOffsets.coverage, coverage)
        XCTAssertEqual(decodedOffsets.entries, offsets)
        let decodedTimes = try IndexFile.decodeTimeIndex(timeBytes)
        XCTAssertEqual(decodedTimes.coverage, coverage)
        XCTAssertEqual(decodedTimes.entries, times)
    }

    func testAnyFlippedBitOrTruncationIsDetected() {
        let bytes = IndexFile.encode(offsetEntries: [OffsetIndexEntry(relativeOffset: 1, position: 2)], coverage: coverage)
        for index in bytes.indices {
            var flipped = bytes
            flipped[index] ^= 0x10
            XCTAssertThrowsError(try IndexFile.decodeOffsetIndex(flipped), "byte \(index)")
        }
        for length in 0..<bytes.count {
            XCTAssertThrowsError(try IndexFile.decodeOffsetIndex(Array(bytes[..<length])))
        }
        XCTAssertThrowsError(try IndexFile.decodeTimeIndex(bytes), "an offset index is not a time index")
    }

    func testChecksummedFileRoundTripAndDetection() throws {
        let payload = Array("{\"name\":\"flips\"}".utf8)
        let bytes = ChecksummedFile.encode(magic: 0x4C44_5443, version: 1, payload: payload)
        let decoded = try ChecksummedFile.decode(bytes, magic: 0x4C44_5443, name: "topic")
        XCTAssertEqual(decoded.version, 1)
        XCTAssertEqual(decoded.payload, payload)
        for index in bytes.indices {
            var flipped = bytes
            flipped[index] ^= 0x01
            XCTAssertThrowsError(try ChecksummedFile.decode(flipped, magic: 0x4C44_5443, name: "topic"), "byte \(index)")
        }
    }

    func testLimitRelationsHold() {
        Limits.check()
        XCTAssertLessThanOrEqual(Limits.batchBytesMax, Limits.groupWriteBytesMax)
    }
}

final class LimitsDocumentationTests: XCTestCase {
    /// Docs/limits.md must name every limit of Limits.swift, so the page cannot fall behind.
    func testEveryLimitIsDocumented() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let source = try String(contentsOf: root.appendingPathComponent("Sources/LogFormat/Limits.swift"), encoding: .utf8)
        let page = try String(contentsOf: root.appendingPathComponent("Docs/limits.md"), encoding: .utf8)
        let names = source.split(separator: "\n").compactMap { line -> String? in
            guard let range = line.range(of: "public static let ") else { return nil }
            return String(line[range.upperBound...].prefix { $0.isLetter || $0.isNumber })
        }
        XCTAssertGreaterThan(names.count, 10)
        for name in names { XCTAssertTrue(page.contains("`\(name)`"), "Docs/limits.md does not document \(name)") }
    }
}
