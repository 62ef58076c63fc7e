/// Byte strings interned to dense ids, looked up from raw bytes without building a
/// `String` or an array per lookup (the replay's hot path sees every record's key here).
/// The bytes live in one arena; the index is open addressing with linear probing.
public struct ByteStringTable: Sendable {
    private var arena: [UInt8] = []
    private var starts: [Int] = [0]
    private var hashes: [UInt64] = []
    /// Slot -> the hash's upper 32 bits, then id + 1 in the lower 32 (0 = empty): a probe
    /// compares the tag in the slot itself before it touches the arena.
    private var slots: [UInt64] = Array(repeating: 0, count: 64)

    @inline(__always)
    private static func entry(_ hash: UInt64, _ id: Int) -> UInt64 { (hash & 0xFFFF_FFFF_0000_0000) | UInt64(id + 1) }

    public init() {}

    public var count: Int { hashes.count }

    /// The id of `key`, inserting it when new.
    public mutating func intern(_ key: UnsafeRawBufferPointer) -> Int32 {
        let hash = Self.hash(key)
        var slot = Int(truncatingIfNeeded: hash) & (slots.count - 1)
        let tag = hash & 0xFFFF_FFFF_0000_0000
        while true {
            let entry = slots[slot]
            if entry == 0 { break }
            let id = Int(entry & 0xFFFF_FFFF) - 1
            if entry & 0xFFFF_FFFF_0000_0000 == tag && equals(id, key) { return Int32(id) }
            slot = (slot + 1) & (slots.count - 1)
        }
        let id = hashes.count
        precondition(id < Int(Int32.max) - 1, "too many distinct keys")
        hashes.append(hash)
        arena.append(contentsOf: key)
        starts.append(arena.count)
        slots[slot] = Self.entry(hash, id)
        if hashes.count * 2 > slots.count { grow() }
        return Int32(id)
    }

    public mutating func intern(_ key: String) -> Int32 {
        var key = key
        return key.withUTF8 { intern(UnsafeRawBufferPointer($0)) }
    }

    /// The id of `key`, nil when absent.
    public func find(_ key: UnsafeRawBufferPointer) -> Int32? {
        let hash = Self.hash(key)
        var slot = Int(truncatingIfNeeded: hash) & (slots.count - 1)
        let tag = hash & 0xFFFF_FFFF_0000_0000
        while true {
            let entry = slots[slot]
            if entry == 0 { return nil }
            let id = Int(entry & 0xFFFF_FFFF) - 1
            if entry & 0xFFFF_FFFF_0000_0000 == tag && equals(id, key) { return Int32(id) }
            slot = (slot + 1) & (slots.count - 1)
        }
    }

    public func string(_ id: Int32) -> String {
        let range = starts[Int(id)]..<starts[Int(id) + 1]
        return String(decoding: arena[range], as: UTF8.self)
    }

    public func withBytes<R>(_ id: Int32, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        let range = starts[Int(id)]..<starts[Int(id) + 1]
        return try arena.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[range])) }
    }

    /// Bytewise order of two interned strings (the order of rows and episodes).
    public func less(_ a: Int32, _ b: Int32) -> Bool {
        if a == b { return false }
        return arena.withUnsafeBytes { raw in
            let ra = starts[Int(a)]..<starts[Int(a) + 1]
            let rb = starts[Int(b)]..<starts[Int(b) + 1]
            return UnsafeRawBufferPointer(rebasing: raw[ra]).lexicographicallyPrecedes(UnsafeRawBufferPointer(rebasing: raw[rb]))
        }
    }

    private func equals(_ id: Int, _ key: UnsafeRawBufferPointer) -> Bool {
        let start = starts[id]
        let end = starts[id + 1]
        if end - start != key.count { return false }
        if key.isEmpty { return true }
        return arena.withUnsafeBytes { raw in
            memcmpBytes(raw.baseAddress! + start, key.baseAddress!, key.count)
        }
    }

    private mutating func grow() {
        var bigger = [UInt64](repeating: 0, count: slots.count * 2)
        for (id, hash) in hashes.enumerated() {
            var slot = Int(truncatingIfNeeded: hash) & (bigger.count - 1)
            while bigger[slot] != 0 { slot = (slot + 1) & (bigger.count - 1) }
            bigger[slot] = Self.entry(hash, id)
        }
        slots = bigger
    }

    /// A word at a time: each 8-byte word (the last one overlapping the one before when
    /// the length is not a multiple of 8; two overlapping 4-byte halves for keys of 4 to
    /// 7 bytes) is multiplied by an odd constant off the dependency chain, folded in with a
    /// rotation (so a word's position counts), then the whole is mixed (Murmur3's final
    /// mix), as slots take the low bits and tags the high ones. In memory only: never
    /// stored, free to change.
    static func hash(_ key: UnsafeRawBufferPointer) -> UInt64 {
        let count = key.count
        var h = UInt64(truncatingIfNeeded: count) &* 0x9E37_79B9_7F4A_7C15
        if count >= 8 {
            var index = 0
            while index + 8 < count {
                h = ((h << 23) | (h >> 41)) ^ (key.loadUnaligned(fromByteOffset: index, as: UInt64.self) &* 0xC2B2_AE3D_27D4_EB4F)
                index += 8
            }
            h = ((h << 23) | (h >> 41)) ^ (key.loadUnaligned(fromByteOffset: count - 8, as: UInt64.self) &* 0x1656_67B1_9E37_79F9)
        } else if count >= 4 {
            let low = UInt64(key.loadUnaligned(fromByteOffset: 0, as: UInt32.self))
            let high = UInt64(key.loadUnaligned(fromByteOffset: count - 4, as: UInt32.self))
            h ^= ((low << 32) | high) &* 0xC2B2_AE3D_27D4_EB4F
        } else if count > 0 {
            let bytes = UInt64(key[0]) << 16 | UInt64(key[count / 2]) << 8 | UInt64(key[count - 1])
            h ^= bytes &* 0xC2B2_AE3D_27D4_EB4F
        }
        h ^= h >> 33
        h = h &* 0xff51_afd7_ed55_8ccd
        h ^= h >> 33
        h = h &* 0xc4ce_b9fe_1a85_ec53
        h ^= h >> 33
        return h
    }
}

/// Byte equality of two raw ranges of `count` bytes: whole words, the tail as the last
/// word overlapping the one before (or two overlapping 4-byte halves below 8 bytes).
@inline(__always)
func memcmpBytes(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ count: Int) -> Bool {
    if count >= 8 {
        var index = 0
        while index + 8 < count {
            if a.loadUnaligned(fromByteOffset: index, as: UInt64.self) != b.loadUnaligned(fromByteOffset: index, as: UInt64.self) { return false }
            index += 8
        }
        return a.loadUnaligned(fromByteOffset: count - 8, as: UInt64.self) == b.loadUnaligned(fromByteOffset: count - 8, as: UInt64.self)
    }
    if count >= 4 {
        return a.loadUnaligned(fromByteOffset: 0, as: UInt32.self) == b.loadUnaligned(fromByteOffset: 0, as: UInt32.self)
            && a.loadUnaligned(fromByteOffset: count - 4, as: UInt32.self) == b.loadUnaligned(fromByteOffset: count - 4, as: UInt32.self)
    }
    var index = 0
    while index < count {
        if a.load(fromByteOffset: index, as: UInt8.self) != b.load(fromByteOffset: index, as: UInt8.self) { return false }
        index += 1
    }
    return true
}
