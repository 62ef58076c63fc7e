@testable import PauliZ
import XCTest

/// The row encoder writes integers and decimals itself; its text must be exactly what
/// `String(Int64)` and `PauliZOutput.decimal` (Swift's shortest round-trip digits) give.
final class LineWriterTests: XCTestCase {
    private func written(_ body: (inout LineWriter) -> Void) -> String {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 64) { scratch in
            var writer = LineWriter(scratch.baseAddress!)
            body(&writer)
            return String(decoding: UnsafeBufferPointer(start: scratch.baseAddress!, count: writer.written(from: scratch.baseAddress!)), as: UTF8.self)
        }
    }

    func testIntegersAsSwiftPrintsThem() {
        var generator = SystemRandomNumberGenerator()
        var values: [Int64] = [0, 1, 9, 10, 11, 99, 100, -1, -9, -10, Int64.max, Int64.min, Int64.max - 1, Int64.min + 1, 999_999_999_999_999_999, 1_000_000_000_000_000_000]
        for digits in 1...18 {
            let power = (0..<digits).reduce(Int64(1)) { value, _ in value * 10 }
            values += [power - 1, power, power + 1, -(power - 1), -power]
        }
        values += (0..<2_000).map { _ in Int64.random(in: Int64.min...Int64.max, using: &generator) }
        for value in values {
            XCTAssertEqual(written { $0.integer(value) }, String(value))
        }
    }

    func testDecimalsAsTheOutputPrintsThem() {
        var generator = SystemRandomNumberGenerator()
        var values: [Double] = [0, -0.0, 1, -1, 0.5, -0.5, 1.0 / 3, 2.0 / 3, 60, 1e15, 1e16, 9_007_199_254_740_991, 9_007_199_254_740_992,
                                -9_007_199_254_740_992, 9_007_199_254_740_994, 1e300, -1e-300, Double.leastNonzeroMagnitude, Double.greatestFiniteMagnitude, 123.25]
        values += (0..<2_000).map { _ in Double(Int64.random(in: -1_000_000...1_000_000, using: &generator)) }
        values += (0..<2_000).map { _ in Double.random(in: -1e6...1e6, using: &generator) }
        values += (0..<500).map { _ in Double(bitPattern: UInt64.random(in: 0...UInt64.max, using: &generator)) }.filter { $0.isFinite }
        for value in values {
            XCTAssertEqual(written { $0.decimal(value) }, PauliZOutput.decimal(value), "\(value)")
        }
    }

    /// The encoder keeps the window's text while rows of one window follow each other; a
    /// row of another window (in either direction) must not reuse it.
    func testEncoderKeepsNoStaleWindow() {
        var encoder = PauliZRowEncoder(format: .jsonl, keyName: "resource", windowMilliseconds: 60_000)
        let key = PauliZRowEncoder.keyBytes("a/b", format: .jsonl)
        for start in [Int64(0), 0, 60_000, 0, -60_000, 1_767_225_600_000, 1_767_225_600_000] {
            var row = PauliZRow(windowStart: start, key: 0)
            row.events = 3
            row.flips = 2
            row.up = 1
            row.knownMilliseconds = 1_500
            row.integral = -700
            var bytes: [UInt8] = []
            encoder.append(row, key: key, to: &bytes)
            XCTAssertEqual(String(decoding: bytes, as: UTF8.self),
                           PauliZOutput.rowLine(.jsonl, keyName: "resource", key: "a/b", row: row, windowMilliseconds: 60_000) + "\n")
            XCTAssertTrue(String(decoding: bytes, as: UTF8.self).contains("\"window_start\":\(start),\"window_end\":\(start + 60_000),"))
        }
    }
}
