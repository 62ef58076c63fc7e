@testable import PauliZ
import XCTest

/// The interning table and the byte comparison under it read keys a word at a time with
/// overlapping tails: every length around the word sizes, and keys that differ in one
/// byte at every position, must still be told apart.
final class ByteStringTableTests: XCTestCase {
    func testKeysOfEveryLengthDifferingAnywhereAreDistinct() {
        var table = ByteStringTable()
        var keys: [[UInt8]] = []
        for length in 0...40 {
            let base = (0..<length).map { UInt8(truncatingIfNeeded: 97 + $0 % 26) }
            keys.append(base)
            for position in 0..<length {
                var changed = base
                changed[position] ^= 0x01
                keys.append(changed)
            }
        }
        let unique = Array(Set(keys))
        var ids: [[UInt8]: Int32] = [:]
        for key in unique {
            let id = key.withUnsafeBytes { table.intern($0) }
            XCTAssertNil(ids.values.first { $0 == id }, "key \(key) got an id already given")
            ids[key] = id
        }
        XCTAssertEqual(table.count, unique.count)
        for (key, id) in ids {
            XCTAssertEqual(key.withUnsafeBytes { table.find($0) }, id)
            XCTAssertEqual(key.withUnsafeBytes { table.intern($0) }, id, "interning again gives the same id")
            XCTAssertEqual(table.withBytes(id) { Array($0) }, key)
        }
        let absent: [UInt8] = Array("not interned at all".utf8)
        XCTAssertNil(absent.withUnsafeBytes { table.find($0) })
    }

    func testByteComparisonMatchesTheNaiveOne() {
        var generator = SystemRandomNumberGenerator()
        for length in 0...40 {
            let a = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            XCTAssertTrue(a.withUnsafeBytes { x in a.withUnsafeBytes { y in length == 0 || memcmpBytes(x.baseAddress!, y.baseAddress!, length) } })
            for position in 0..<length {
                var b = a
                b[position] &+= 1
                let equal = a.withUnsafeBytes { x in b.withUnsafeBytes { y in memcmpBytes(x.baseAddress!, y.baseAddress!, length) } }
                XCTAssertFalse(equal, "length \(length), byte \(position) differs")
            }
        }
    }

    func testBytewiseOrder() {
        var table = ByteStringTable()
        let names = ["b", "a", "ab", "a/b", "", "ba"]
        let ids = names.map { table.intern($0) }
        let sorted = ids.sorted { table.less($0, $1) }.map { table.string($0) }
        XCTAssertEqual(sorted, names.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) })
    }
}

/// Resource filters compare raw bytes a word at a time; a prefix ends at a "/" or the end.
final class ResourceFilterTests: XCTestCase {
    private func kept(_ filter: ResourceFilter, _ resource: String) -> Bool {
        var resource = resource
        return resource.withUTF8 { filter.matches(UnsafeRawBufferPointer($0)) }
    }

    func testExactAndPrefixMatching() {
        let long = "prod/eu-1/orders-12/db/role"
        XCTAssertTrue(kept(.exact(long), long))
        XCTAssertFalse(kept(.exact(long), long + "x"))
        XCTAssertFalse(kept(.exact(long), String(long.dropLast())))
        XCTAssertFalse(kept(.exact(long), "prod/eu-1/orders-12/db/rolf"))
        XCTAssertTrue(kept(.exact("é/ü"), "é/ü"))
        XCTAssertFalse(kept(.exact("é/ü"), "é/u"))
        for resource in ["prod", "prod/eu-1", long] { XCTAssertTrue(kept(.prefix("prod"), resource), resource) }
        for resource in ["produce", "pro", "prox/eu", "x/prod"] { XCTAssertFalse(kept(.prefix("prod"), resource), resource) }
        XCTAssertTrue(kept(.prefix("prod/eu-1/orders-12"), long))
        XCTAssertFalse(kept(.prefix("prod/eu-1/orders-1"), long), "a prefix ends at a segment's end")
        XCTAssertTrue(kept(.all, long))
    }
}
