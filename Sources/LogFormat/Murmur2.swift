/// Kafka's key-to-partition rule: murmur2 (MurmurHash2 with seed 0x9747b28c, as Kafka's
/// `Utils.murmur2` computes it), made positive by masking the sign bit, modulo the
/// partition count. A resource (the record key) therefore always lands in the same
/// partition, and Kafka clients agree with Lodestone on where a key goes.
public enum Partitioner {
    public static func murmur2(_ key: UnsafeRawBufferPointer) -> Int32 {
        let m: UInt32 = 0x5bd1_e995
        let length = key.count
        var h: UInt32 = 0x9747_b28c ^ UInt32(truncatingIfNeeded: length)
        let wordCount = length / 4
        for word in 0..<wordCount {
            var k = UInt32(littleEndian: key.loadUnaligned(fromByteOffset: word * 4, as: UInt32.self))
            k = k &* m
            k ^= k >> 24
            k = k &* m
            h = h &* m
            h ^= k
        }
        let tail = wordCount * 4
        switch length % 4 {
        case 3:
            h ^= UInt32(key[tail + 2]) << 16
            h ^= UInt32(key[tail + 1]) << 8
            h ^= UInt32(key[tail])
            h = h &* m
        case 2:
            h ^= UInt32(key[tail + 1]) << 8
            h ^= UInt32(key[tail])
            h = h &* m
        case 1:
            h ^= UInt32(key[tail])
            h = h &* m
        default:
            break
        }
        h ^= h >> 13
        h = h &* m
        h ^= h >> 15
        return Int32(bitPattern: h)
    }

    public static func murmur2(_ key: [UInt8]) -> Int32 {
        key.withUnsafeBytes { murmur2($0) }
    }

    /// The partition of `key` in a topic of `partitionCount` partitions.
    public static func partition(forKey key: [UInt8], partitionCount: Int) -> Int {
        precondition(partitionCount > 0, "a topic has at least one partition")
        return Int(murmur2(key) & 0x7fff_ffff) % partitionCount
    }
}
