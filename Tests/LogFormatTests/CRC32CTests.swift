import XCTest
@testable import LogFormat

final class CRC32CTests: XCTestCase {
    func testCheckValueOfBothImplementations() {
        let bytes = Array("123456789".utf8)
        XCTAssertEqual(CRC32C.checksum(bytes), 0xE306_9283)
        bytes.withUnsafeBytes { raw in
            XCTAssertEqual(CRC32C.checksum(raw, using: .software), 0xE306_9283)
            if CRC32C.implementation == .hardware {
                XCTAssertEqual(CRC32C.checksum(raw, using: .hardware), 0xE306_9283)
            }
        }
    }

    /// RFC 3720 (iSCSI), appendix B.4: the CRC-32C examples.
    func testRFC3720Vectors() {
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)), 0x62A8_AB43)
        XCTAssertEqual(CRC32C.checksum((0..<32).map { UInt8($0) }), 0x46DD_794E)
        XCTAssertEqual(CRC32C.checksum((0..<32).map { UInt8(31 - $0) }), 0x113F_DB5C)
    }

    func testThisMachineUsesTheHardwarePath() throws {
        #if arch(x86_64)
        // Every x86-64 machine this project runs on has SSE4.2; a silent fallback to the
        // table would cost a factor of five on every batch.
        XCTAssertEqual(CRC32C.implementation, .hardware)
        #else
        throw XCTSkip("no hardware CRC path on this architecture")
        #endif
    }

    /// Lengths around the three-stream block sizes (256 and 8192 bytes, times three) and
    /// every misalignment: the interleaved path must agree with the table everywhere.
    func testHardwareAgreesWithSoftwareAtEveryLengthAndAlignment() throws {
        guard CRC32C.implementation == .hardware else { throw XCTSkip("no CRC32 instruction") }
        var generator = SplitMix64(seed: 11)
        let buffer = (0..<(3 * 8192 * 2 + 1024)).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let lengths = Array(0...300) + [767, 768, 769, 3 * 8192 - 1, 3 * 8192, 3 * 8192 + 1, 3 * 8192 + 775, 2 * 3 * 8192 + 9]
        buffer.withUnsafeBytes { raw in
            for start in 0..<9 {
                for length in lengths where start + length <= raw.count {
                    let slice = UnsafeRawBufferPointer(rebasing: raw[start..<(start + length)])
                    XCTAssertEqual(
                        CRC32C.checksum(slice, using: .hardware), CRC32C.checksum(slice, using: .software),
                        "start \(start) length \(length)")
                }
            }
        }
    }

    func testUpdateContinuesAChecksum() {
        let bytes = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let whole = CRC32C.checksum(bytes)
        bytes.withUnsafeBytes { raw in
            for split in [0, 1, 7, 4096, 9999, 10_000] {
                let first = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[..<split]))
                XCTAssertEqual(CRC32C.update(first, UnsafeRawBufferPointer(rebasing: raw[split...])), whole, "split \(split)")
            }
        }
    }
}

/// A small seeded generator for tests (SplitMix64).
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
