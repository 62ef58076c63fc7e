import XCTest
@testable import LogFormat

final class LZ4FrameTests: XCTestCase {
    func testRoundTripOfRandomAndRepetitiveData() throws {
        var generator = SplitMix64(seed: 5)
        let random = (0..<200_000).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let repetitive = [UInt8](String(repeating: "{\"resource\":\"a/b\",\"to\":\"on\"}", count: 10_000).utf8)
        for input in [random, repetitive, [1], Array(repeating: 0, count: 65536), Array(repeating: 9, count: 65537)] {
            let frame = input.withUnsafeBytes { LZ4Frame.compress($0) }
            let output = try frame.withUnsafeBytes { try LZ4Frame.decompress($0, outputBytesMax: 1 << 20) }
            XCTAssertEqual(output, input)
        }
    }

    /// The high-compression levels write the same format, smaller: what a cold segment's
    /// rewrite uses; the frames decompress to exactly the input.
    func testHighCompressionFramesAreSmallerAndDecodeToTheSameBytes() throws {
        var generator = SplitMix64(seed: 11)
        var text = ""
        for index in 0..<20_000 {
            text += "{\"resource\":\"prod/eu-1/service-\(index % 97)/leader\",\"to\":\"node-\(UInt8.random(in: 0...2, using: &generator))\",\"seq\":\(index)}\n"
        }
        let input = [UInt8](text.utf8)
        let fast = input.withUnsafeBytes { LZ4Frame.compress($0) }
        var previous = fast.count
        for level in [Int32(3), LZ4Frame.highCompressionDefault, 12] {
            let frame = input.withUnsafeBytes { LZ4Frame.compress($0, level: level) }
            XCTAssertEqual(try frame.withUnsafeBytes { try LZ4Frame.decompress($0, outputBytesMax: 4 << 20) }, input, "level \(level)")
            XCTAssertLessThanOrEqual(frame.count, previous, "level \(level) is not larger than the level below it")
            previous = frame.count
        }
        XCTAssertLessThan(previous, fast.count * 9 / 10, "HC saves at least a tenth on flip-like JSON (fast \(fast.count), HC 12 \(previous))")
    }

    func testFramesFromPythonLZ4InEveryFormDecode() throws {
        let payload = [UInt8](try KafkaGoldenVectorTests.fixture("lz4-payload", "bin"))
        for name in ["lz4-linked-checksums", "lz4-independent-nosize"] {
            let frame = [UInt8](try KafkaGoldenVectorTests.fixture(name, "bin"))
            let output = try frame.withUnsafeBytes { try LZ4Frame.decompress($0, outputBytesMax: 1 << 20) }
            XCTAssertEqual(output, payload, name)
        }
    }

    func testOutputLimitStopsDecompression() {
        let input = [UInt8](repeating: 3, count: 300_000)
        let frame = input.withUnsafeBytes { LZ4Frame.compress($0) }
        XCTAssertThrowsError(try frame.withUnsafeBytes { try LZ4Frame.decompress($0, outputBytesMax: 299_999) }) { error in
            XCTAssertEqual((error as? FormatError)?.code, .limitExceeded)
        }
    }

    func testDeclaredContentSizeOverTheLimitIsRefusedUpFront() throws {
        let frame = [UInt8](try KafkaGoldenVectorTests.fixture("lz4-linked-checksums", "bin"))
        XCTAssertThrowsError(try frame.withUnsafeBytes { try LZ4Frame.decompress($0, outputBytesMax: 1000) }) { error in
            XCTAssertEqual((error as? FormatError)?.code, .limitExceeded)
        }
    }

    func testTruncatedGarbageAndTrailingBytesAreRefused() {
        let input = [UInt8](repeating: 1, count: 100_000) + (0..<1000).map { UInt8(truncatingIfNeeded: $0) }
        let frame = input.withUnsafeBytes { LZ4Frame.compress($0) }
        for cut in [0, 3, 7, frame.count / 2, frame.count - 1] {
            XCTAssertThrowsError(try Array(frame[..<cut]).withUnsafeBytes { try LZ4Frame.decompress($0, outputBytesMax: 1 << 20) }, "cut \(cut)")
        }
        XCTAssertThrowsError(try (frame + [0]).withUnsafeBytes { try LZ4Frame.decompress($0, outputBytesMax: 1 << 20) }) { error in
            XCTAssertEqual((error as? FormatError)?.code, .trailingBytes)
        }
        var garbage = frame
        garbage[4] ^= 0xFF
        XCTAssertThrowsError(try garbage.withUnsafeBytes { try LZ4Frame.decompress($0, outputBytesMax: 1 << 20) })
    }
}
