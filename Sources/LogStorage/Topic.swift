import Foundation
import LogFormat

/// What a topic holds (design decision 2).
public enum TopicKind: String, Codable, Sendable, CaseIterable {
    /// Opaque values.
    case raw
    /// Flip events in LogFormat's binary encoding, validated and fenced per resource.
    case flip
}

/// A topic's stored configuration, fixed at creation.
///
/// Stored as `topic.config`: a `ChecksummedFile` (magic "LDTC", version 1) whose payload
/// is this struct as JSON with sorted keys. Fields added by later versions are optional,
/// so older files still read.
public struct TopicConfiguration: Codable, Sendable, Equatable {
    public var name: String
    public var partitionCount: Int
    public var kind: TopicKind
    /// Wall-clock milliseconds when the topic was created.
    public var createdAt: Int64
    /// Flip topics: the polarity of a state, for events that carry none (applied when
    /// events are read; stored events never change). Absent when the topic has none.
    public var polarityMap: [String: Int8]?
    /// Storm parameters live Pauli-Z keeps for this topic (spec section 6), fixed at
    /// creation: interval S (ms), enter threshold E, exit threshold X < E.
    public var stormIntervalMilliseconds: Int64?
    public var stormEnter: Int?
    public var stormExit: Int?

    public static let defaultStormIntervalMilliseconds = StormDefaults.intervalMilliseconds
    public static let defaultStormEnter = StormDefaults.enter
    public static let defaultStormExit = StormDefaults.exit

    public init(
        name: String, partitionCount: Int, kind: TopicKind, createdAt: Int64, polarityMap: [String: Int8]? = nil,
        stormIntervalMilliseconds: Int64? = nil, stormEnter: Int? = nil, stormExit: Int? = nil
    ) {
        self.name = name
        self.partitionCount = partitionCount
        self.kind = kind
        self.createdAt = createdAt
        self.polarityMap = polarityMap
        self.stormIntervalMilliseconds = stormIntervalMilliseconds
        self.stormEnter = stormEnter
        self.stormExit = stormExit
    }

    /// The storm parameters in force (the defaults where none were given).
    public var storm: (intervalMilliseconds: Int64, enter: Int, exit: Int) {
        (stormIntervalMilliseconds ?? Self.defaultStormIntervalMilliseconds, stormEnter ?? Self.defaultStormEnter, stormExit ?? Self.defaultStormExit)
    }

    /// Checks the storm parameters by the one rule for them (`StormDefaults.problem`).
    public func checkStorm() throws(StorageError) {
        let (interval, enter, exit) = storm
        if let problem = StormDefaults.problem(intervalMilliseconds: interval, enter: enter, exit: exit) { throw StorageError(.invalidArgument, problem) }
    }

    /// Checks the polarity map: states of 1 to 64 bytes, polarities -1, 0 or 1, only for
    /// flip topics, at most 10,000 states.
    public func checkPolarityMap() throws(StorageError) {
        guard let polarityMap else { return }
        if kind != .flip { throw StorageError(.invalidArgument, "a polarity map is for flip topics only") }
        if polarityMap.count > 10_000 { throw StorageError(.invalidArgument, "a polarity map holds at most 10000 states, got \(polarityMap.count)") }
        for (state, polarity) in polarityMap {
            if state.utf8.isEmpty || state.utf8.count > FlipEvent.stateBytesMax {
                throw StorageError(.invalidArgument, "polarity map state \"\(state)\" must be 1 to \(FlipEvent.stateBytesMax) bytes")
            }
            if !(-1...1).contains(polarity) {
                throw StorageError(.invalidArgument, "polarity map state \"\(state)\" has polarity \(polarity); it must be -1, 0 or 1")
            }
        }
    }

    static let fileName = "topic.config"
    static let magic: UInt32 = 0x4C44_5443  // "LDTC"
    static let version: UInt16 = 1

    func encoded() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        // Encoding a struct of strings and integers cannot fail.
        let json = try! encoder.encode(self)
        return ChecksummedFile.encode(magic: Self.magic, version: Self.version, payload: Array(json))
    }

    static func decode(_ bytes: [UInt8], path: String) throws(StorageError) -> TopicConfiguration {
        let payload: [UInt8]
        do {
            let decoded = try ChecksummedFile.decode(bytes, magic: magic, name: path)
            if decoded.version != version { throw FormatError(.badMagic, "\(path): version \(decoded.version) is not readable") }
            payload = decoded.payload
        } catch {
            throw StorageError(.corruption, "\(error)")
        }
        do {
            return try JSONDecoder().decode(TopicConfiguration.self, from: Data(payload))
        } catch {
            throw StorageError.corruption(path, "the configuration does not decode: \(error)")
        }
    }

    /// The partition a record key (the resource) belongs to: murmur2, as Kafka.
    public func partition(forKey key: [UInt8]) -> Int {
        Partitioner.partition(forKey: key, partitionCount: partitionCount)
    }
}

/// Topic names: 1 to 249 bytes of letters, digits, `.`, `_`, `-` and `/`, where `/`
/// separates non-empty segments that are neither `.` nor `..` (so names like `prod/flips`
/// group under auth prefixes). On disk a topic's directory is its name with `/` written
/// as `%2F` (`%` is not allowed in names, so the mapping is reversible).
public enum TopicName {
    public static func validate(_ name: String) throws(StorageError) {
        let bytes = Array(name.utf8)
        if bytes.isEmpty || bytes.count > Limits.topicNameBytesMax {
            throw StorageError(.invalidArgument, "topic name must be 1 to \(Limits.topicNameBytesMax) bytes, got \(bytes.count)")
        }
        for byte in bytes {
            let allowed = (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "/")
            if !allowed {
                throw StorageError(.invalidArgument, "topic name \"\(name)\" has a character other than letters, digits, '.', '_', '-' and '/'")
            }
        }
        for segment in name.split(separator: "/", omittingEmptySubsequences: false) where segment.isEmpty || segment == "." || segment == ".." {
            throw StorageError(.invalidArgument, "topic name \"\(name)\" has an empty, '.' or '..' segment between slashes")
        }
    }

    public static func directoryName(for name: String) -> String {
        name.replacingOccurrences(of: "/", with: "%2F")
    }

    public static func name(forDirectory directory: String) -> String {
        directory.replacingOccurrences(of: "%2F", with: "/")
    }
}
