import LogFormat
import NIOCore

/// Request kinds (a response's kind is its request's | 0x8000).
public enum MessageKind: UInt16, Sendable, CaseIterable {
    case hello = 1
    case createTopic = 2
    case listTopics = 3
    case describeTopic = 4
    case initProducer = 5
    case append = 6
    case fetch = 7
    case listOffsets = 8
    case health = 9
    case pauliz = 10
}

public enum ProtocolVersion {
    /// The versions this build speaks.
    public static let minimum: UInt16 = 1
    public static let current: UInt16 = 1
}

// MARK: Requests

public struct HelloRequest: Equatable, Sendable {
    public var minimumVersion: UInt16
    public var maximumVersion: UInt16
    public var clientName: String
    /// Empty when the client has none.
    public var token: String

    public init(minimumVersion: UInt16 = ProtocolVersion.minimum, maximumVersion: UInt16 = ProtocolVersion.current, clientName: String, token: String) {
        self.minimumVersion = minimumVersion
        self.maximumVersion = maximumVersion
        self.clientName = clientName
        self.token = token
    }
}

public struct HelloReply: Equatable, Sendable {
    public var version: UInt16
    public var serverName: String
    public var frameBytesMax: UInt32
    public var inFlightRequestsMax: UInt32

    public init(version: UInt16, serverName: String, frameBytesMax: UInt32, inFlightRequestsMax: UInt32) {
        self.version = version
        self.serverName = serverName
        self.frameBytesMax = frameBytesMax
        self.inFlightRequestsMax = inFlightRequestsMax
    }
}

/// A topic as the protocol describes it.
public struct TopicInfo: Equatable, Sendable {
    public enum Kind: UInt8, Sendable {
        case raw = 0
        case flip = 1
    }

    public struct PartitionOffsets: Equatable, Sendable {
        public var start: Int64
        /// The offset after the last durable record.
        public var end: Int64

        public init(start: Int64, end: Int64) {
            self.start = start
            self.end = end
        }
    }

    public var name: String
    public var partitionCount: UInt32
    public var kind: Kind
    public var createdAt: Int64
    /// Flip topics: state to polarity, sorted by state; nil when the topic has none.
    public var polarityMap: [(state: String, polarity: Int8)]?
    public var stormIntervalMilliseconds: Int64
    public var stormEnter: UInt32
    public var stormExit: UInt32
    /// Per partition, when the server says (describe).
    public var partitions: [PartitionOffsets]

    public init(
        name: String, partitionCount: UInt32, kind: Kind, createdAt: Int64 = 0, polarityMap: [(state: String, polarity: Int8)]? = nil,
        stormIntervalMilliseconds: Int64 = StormDefaults.intervalMilliseconds, stormEnter: UInt32 = UInt32(StormDefaults.enter),
        stormExit: UInt32 = UInt32(StormDefaults.exit), partitions: [PartitionOffsets] = []
    ) {
        self.name = name
        self.partitionCount = partitionCount
        self.kind = kind
        self.createdAt = createdAt
        self.polarityMap = polarityMap
        self.stormIntervalMilliseconds = stormIntervalMilliseconds
        self.stormEnter = stormEnter
        self.stormExit = stormExit
        self.partitions = partitions
    }

    public static func == (a: TopicInfo, b: TopicInfo) -> Bool {
        a.name == b.name && a.partitionCount == b.partitionCount && a.kind == b.kind && a.createdAt == b.createdAt
            && a.polarityMap?.map(\.state) == b.polarityMap?.map(\.state) && a.polarityMap?.map(\.polarity) == b.polarityMap?.map(\.polarity)
            && a.stormIntervalMilliseconds == b.stormIntervalMilliseconds && a.stormEnter == b.stormEnter && a.stormExit == b.stormExit
            && a.partitions == b.partitions
    }
}

public struct AppendRequest: Equatable, Sendable {
    public enum Ack: UInt8, Sendable {
        case durable = 0
        case written = 1
        /// No response is sent at all.
        case none = 2
    }

    public var topic: String
    public var partition: UInt32
    public var ack: Ack
    /// Whole RecordBatch v2 byte blocks, appended in this order.
    public var batches: [ByteBuffer]

    public init(topic: String, partition: UInt32, ack: Ack, batches: [ByteBuffer]) {
        self.topic = topic
        self.partition = partition
        self.ack = ack
        self.batches = batches
    }
}

/// What happened to one batch of an append.
public struct BatchResult: Equatable, Sendable {
    public enum Outcome: UInt8, Sendable {
        case committed = 0
        case duplicate = 1
        case refused = 2
        case fenced = 3
        case outOfOrder = 4
        case unknownProducer = 5
        /// The result carries an error (`BatchResult.error`), not an outcome.
        case noOutcome = 255

        public var name: String {
            switch self {
            case .committed: return "committed"
            case .duplicate: return "duplicate"
            case .refused: return "refused"
            case .fenced: return "fenced"
            case .outOfOrder: return "out_of_order"
            case .unknownProducer: return "unknown_producer"
            case .noOutcome: return "none"
            }
        }
    }

    /// `.none` when the batch has an outcome; otherwise the failure, and then the outcome
    /// is `noOutcome`, the offsets and the append time -1.
    public var error: ErrorCode
    public var message: String
    public var outcome: Outcome
    public var baseOffset: Int64
    public var lastOffset: Int64
    public var appendTime: Int64
    public var refusals: [RecordRefusal]

    public init(error: ErrorCode = .none, message: String = "", outcome: Outcome = .committed, baseOffset: Int64 = -1, lastOffset: Int64 = -1, appendTime: Int64 = -1, refusals: [RecordRefusal] = []) {
        self.error = error
        self.message = message
        self.outcome = outcome
        self.baseOffset = baseOffset
        self.lastOffset = lastOffset
        self.appendTime = appendTime
        self.refusals = refusals
    }
}

public struct FetchRequest: Equatable, Sendable {
    public var topic: String
    public var partition: UInt32
    public var offset: Int64
    public var maxBytes: UInt32
    /// How long to wait for data when there is none at `offset` yet.
    public var maxWaitMilliseconds: UInt32

    public init(topic: String, partition: UInt32, offset: Int64, maxBytes: UInt32, maxWaitMilliseconds: UInt32) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.maxBytes = maxBytes
        self.maxWaitMilliseconds = maxWaitMilliseconds
    }
}

public struct FetchReply: Equatable, Sendable {
    public var logStart: Int64
    /// The offset after the last durable record.
    public var durableEnd: Int64
    /// Where to fetch from next.
    public var nextOffset: Int64
    /// Whole batches, back to back, as stored.
    public var records: ByteBuffer

    public init(logStart: Int64, durableEnd: Int64, nextOffset: Int64, records: ByteBuffer) {
        self.logStart = logStart
        self.durableEnd = durableEnd
        self.nextOffset = nextOffset
        self.records = records
    }
}

public struct ListOffsetsRequest: Equatable, Sendable {
    public enum Mode: UInt8, Sendable {
        case earliest = 0
        case latest = 1
        /// The first offset whose append time is at or after `time`.
        case time = 2
    }

    public var topic: String
    public var partition: UInt32
    public var mode: Mode
    public var time: Int64

    public init(topic: String, partition: UInt32, mode: Mode, time: Int64 = 0) {
        self.topic = topic
        self.partition = partition
        self.mode = mode
        self.time = time
    }
}

public struct ListOffsetsReply: Equatable, Sendable {
    /// -1 when no record is that late.
    public var offset: Int64
    public var start: Int64
    public var end: Int64

    public init(offset: Int64, start: Int64, end: Int64) {
        self.offset = offset
        self.start = start
        self.end = end
    }
}

public struct HealthReply: Equatable, Sendable {
    public var status: String
    public var counters: [(name: String, value: Int64)]

    public init(status: String, counters: [(name: String, value: Int64)]) {
        self.status = status
        self.counters = counters
    }

    public static func == (a: HealthReply, b: HealthReply) -> Bool {
        a.status == b.status && a.counters.map(\.name) == b.counters.map(\.name) && a.counters.map(\.value) == b.counters.map(\.value)
    }
}

/// A Pauli-Z query (Docs/spec/pauli-z.md) over a flip topic's durable data.
public struct PaulizRequest: Equatable, Sendable {
    public enum Filter: Equatable, Sendable {
        case all
        case exact(String)
        case prefix(String)
    }

    public var topic: String
    public var windowMilliseconds: Int64
    public var hopMilliseconds: Int64
    public var from: Int64?
    public var to: Int64?
    public var filter: Filter
    /// nil: the topic's storm parameters.
    public var stormIntervalMilliseconds: Int64?
    public var stormEnter: Int32?
    public var stormExit: Int32?

    public init(
        topic: String, windowMilliseconds: Int64, hopMilliseconds: Int64, from: Int64? = nil, to: Int64? = nil, filter: Filter = .all,
        stormIntervalMilliseconds: Int64? = nil, stormEnter: Int32? = nil, stormExit: Int32? = nil
    ) {
        self.topic = topic
        self.windowMilliseconds = windowMilliseconds
        self.hopMilliseconds = hopMilliseconds
        self.from = from
        self.to = to
        self.filter = filter
        self.stormIntervalMilliseconds = stormIntervalMilliseconds
        self.stormEnter = stormEnter
        self.stormExit = stormExit
    }
}

/// The answer to a Pauli-Z query: the rows (integer figures; the client computes the
/// ratios and rollups) in output order, and the storm episodes the query selects.
public struct PaulizReply: Equatable, Sendable {
    public struct Row: Equatable, Sendable {
        public var resource: String
        public var windowStart: Int64
        /// events, flips, up, down, covered, chainBreaks, seqGaps, epochChanges,
        /// clockRegressions, knownMilliseconds, integral, stormMilliseconds.
        public var figures: [Int64]

        public init(resource: String, windowStart: Int64, figures: [Int64]) {
            self.resource = resource
            self.windowStart = windowStart
            self.figures = figures
        }

        public static let figureCount = 12
    }

    public struct Episode: Equatable, Sendable {
        public var resource: String
        public var start: Int64
        public var end: Int64?
        public var flips: Int64
        public var peak: Int64

        public init(resource: String, start: Int64, end: Int64?, flips: Int64, peak: Int64) {
            self.resource = resource
            self.start = start
            self.end = end
            self.flips = flips
            self.peak = peak
        }
    }

    /// nil when the topic holds no events.
    public var horizon: Int64?
    /// Events read (all resources), for the caller's information.
    public var eventsRead: Int64
    public var rows: [Row]
    public var episodes: [Episode]
    /// More parts of this answer follow: an answer larger than one frame goes out as
    /// several replies to its one request, rows first, then episodes, each part in order
    /// (`parts`); the client joins them (`append`).
    public var continued: Bool

    public init(horizon: Int64?, eventsRead: Int64, rows: [Row], episodes: [Episode], continued: Bool = false) {
        self.horizon = horizon
        self.eventsRead = eventsRead
        self.rows = rows
        self.episodes = episodes
        self.continued = continued
    }

    /// Bytes of a part before its rows and episodes (flags, horizon, events read, two counts).
    public static let partHeaderBytes = 25

    public static func encodedBytes(_ row: Row) -> Int { 2 + row.resource.utf8.count + 8 + 8 * row.figures.count }
    public static func encodedBytes(_ episode: Episode) -> Int { 35 + episode.resource.utf8.count }

    /// Bytes the answer takes encoded, all in one part.
    public var encodedBytes: Int {
        Self.partHeaderBytes + rows.reduce(0) { $0 + Self.encodedBytes($1) } + episodes.reduce(0) { $0 + Self.encodedBytes($1) }
    }

    /// The answer cut into parts of at most `bytesMax` encoded bytes each (an answer that
    /// fits is one part), every part but the last `continued`.
    public func parts(bytesMax: Int) -> [PaulizReply] {
        var parts: [PaulizReply] = []
        var current = PaulizReply(horizon: horizon, eventsRead: eventsRead, rows: [], episodes: [])
        var bytes = Self.partHeaderBytes
        func close() {
            current.continued = true
            parts.append(current)
            current = PaulizReply(horizon: horizon, eventsRead: eventsRead, rows: [], episodes: [])
            bytes = Self.partHeaderBytes
        }
        for row in rows {
            let size = Self.encodedBytes(row)
            if bytes + size > bytesMax && !(current.rows.isEmpty && current.episodes.isEmpty) { close() }
            current.rows.append(row)
            bytes += size
        }
        for episode in episodes {
            let size = Self.encodedBytes(episode)
            if bytes + size > bytesMax && !(current.rows.isEmpty && current.episodes.isEmpty) { close() }
            current.episodes.append(episode)
            bytes += size
        }
        parts.append(current)
        return parts
    }

    /// Joins the next part of the same answer onto this one.
    public mutating func append(_ part: PaulizReply) {
        rows += part.rows
        episodes += part.episodes
        continued = part.continued
    }
}

public enum Request: Equatable, Sendable {
    case hello(HelloRequest)
    case createTopic(TopicInfo)
    case listTopics
    case describeTopic(String)
    /// With a name, the named identity's next epoch; without, a new anonymous identity.
    case initProducer(name: String?)
    case append(AppendRequest)
    case fetch(FetchRequest)
    case listOffsets(ListOffsetsRequest)
    case health
    case pauliz(PaulizRequest)

    public var kind: MessageKind {
        switch self {
        case .hello: return .hello
        case .createTopic: return .createTopic
        case .listTopics: return .listTopics
        case .describeTopic: return .describeTopic
        case .initProducer: return .initProducer
        case .append: return .append
        case .fetch: return .fetch
        case .listOffsets: return .listOffsets
        case .health: return .health
        case .pauliz: return .pauliz
        }
    }
}

public enum Reply: Equatable, Sendable {
    case hello(HelloReply)
    /// createTopic and describeTopic.
    case topic(TopicInfo)
    case topics([TopicInfo])
    case producer(producerId: Int64, epoch: Int16)
    case append([BatchResult])
    case fetch(FetchReply)
    case listOffsets(ListOffsetsReply)
    case health(HealthReply)
    case pauliz(PaulizReply)
}
