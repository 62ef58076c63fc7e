import LogFormat

/// Storm parameters of Docs/spec/pauli-z.md section 6: interval S, enter threshold E, exit
/// threshold X, with X < E.
public struct StormParameters: Sendable, Equatable, Hashable {
    public var intervalMilliseconds: Int64
    public var enter: Int
    public var exit: Int

    public init(intervalMilliseconds: Int64 = StormDefaults.intervalMilliseconds, enter: Int = StormDefaults.enter, exit: Int = StormDefaults.exit) {
        self.intervalMilliseconds = intervalMilliseconds
        self.enter = enter
        self.exit = exit
    }

    public func validate() throws(PauliZError) {
        try Self.check(intervalMilliseconds: intervalMilliseconds, enter: enter, exit: exit)
    }

    /// Checks the parameters given (nil: not known here, as a topic's default is only known
    /// to the server that holds the topic).
    public static func check(intervalMilliseconds: Int64?, enter: Int?, exit: Int?) throws(PauliZError) {
        if let problem = StormDefaults.problem(intervalMilliseconds: intervalMilliseconds, enter: enter, exit: exit) { throw PauliZError(.invalidArgument, problem) }
    }
}

/// What a Pauli-Z query asks: windows (size W, hop H; tumbling when H = W), which
/// windows by start (`from <= s < to`), storm parameters, and the topic's polarity map.
public struct PauliZQuery: Sendable, Equatable {
    public var windowMilliseconds: Int64
    public var hopMilliseconds: Int64
    public var from: Int64?
    public var to: Int64?
    public var storm: StormParameters
    /// The topic's polarity map (state name to -1, 0 or 1), applied to events without one.
    public var polarityMap: [String: Int8]

    public init(
        windowMilliseconds: Int64, hopMilliseconds: Int64? = nil, from: Int64? = nil, to: Int64? = nil,
        storm: StormParameters = StormParameters(), polarityMap: [String: Int8] = [:]
    ) {
        self.windowMilliseconds = windowMilliseconds
        self.hopMilliseconds = hopMilliseconds ?? windowMilliseconds
        self.from = from
        self.to = to
        self.storm = storm
        self.polarityMap = polarityMap
    }

    /// Windows each event belongs to (W / H).
    public var windowsPerEvent: Int { Int(windowMilliseconds / hopMilliseconds) }

    public func validate() throws(PauliZError) {
        if windowMilliseconds < 1 || windowMilliseconds > PauliZLimits.durationMax {
            throw PauliZError(.invalidArgument, "the window must be 1 ms to 2^53-1 ms, got \(windowMilliseconds)")
        }
        if hopMilliseconds < 1 || hopMilliseconds > windowMilliseconds || windowMilliseconds % hopMilliseconds != 0 {
            throw PauliZError(.invalidArgument, "the hop must divide the window (\(windowMilliseconds) ms), got \(hopMilliseconds)")
        }
        if windowMilliseconds / hopMilliseconds > Int64(PauliZLimits.windowsPerEventMax) {
            throw PauliZError(.invalidArgument, "window / hop is \(windowMilliseconds / hopMilliseconds); at most \(PauliZLimits.windowsPerEventMax) overlapping windows are kept per event")
        }
        if let from, let to, from >= to { throw PauliZError(.invalidArgument, "--from (\(from)) must be before --to (\(to))") }
        try storm.validate()
        for (state, polarity) in polarityMap where !(-1...1).contains(polarity) {
            throw PauliZError(.invalidArgument, "the polarity map gives \(state) \(polarity); polarities are -1, 0 or 1")
        }
    }
}

/// Which resources a query keeps: all, one, or a prefix (P itself and everything under
/// `P/`). Events of other resources still move the horizon (spec section 4).
public enum ResourceFilter: Sendable, Equatable {
    case all
    case exact(String)
    case prefix(String)

    /// Whether a resource (its UTF-8 bytes) is kept.
    public func matches(_ key: UnsafeRawBufferPointer) -> Bool {
        switch self {
        case .all:
            return true
        case .exact(let name):
            return Self.startsWith(key, name, wholly: true)
        case .prefix(let prefix):
            guard Self.startsWith(key, prefix, wholly: false) else { return false }
            let count = prefix.utf8.count
            return key.count == count || key[count] == UInt8(ascii: "/")
        }
    }

    /// Whether `key` begins with `text`'s UTF-8 bytes (is exactly them when `wholly`),
    /// compared a word at a time (a filtered replay asks this of every event).
    @inline(__always)
    static func startsWith(_ key: UnsafeRawBufferPointer, _ text: String, wholly: Bool) -> Bool {
        var text = text
        return text.withUTF8 { wanted in
            guard wholly ? key.count == wanted.count : key.count >= wanted.count else { return false }
            return wanted.isEmpty || memcmpBytes(key.baseAddress!, wanted.baseAddress!, wanted.count)
        }
    }
}

/// The Pauli-Z limits, named as the engine reads them; their values live in
/// `LogFormat.Limits` with every other limit.
public enum PauliZLimits {
    public static let durationMax = Limits.paulizDurationMillisecondsMax
    public static let windowsPerEventMax = Limits.paulizWindowsPerEventMax
    public static let stormThresholdMax = Limits.stormThresholdMax
    /// Rows held in memory before a sorted run is spilled to a temporary file.
    public static let rowsInMemoryDefault = Limits.paulizSortMemoryBytesDefault / MemoryLayout<PauliZRow>.stride
}

/// An error of a Pauli-Z query: what kind (so the server answers the right wire code and
/// the command line the right exit status) and a message saying what and why.
public struct PauliZError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// The query asks for something it cannot take (window, hop, range, storm
        /// parameters, polarities, a raw topic).
        case invalidArgument = "invalid_argument"
        /// The query needs more than a limit allows (events read by a server-side replay,
        /// a state name's size).
        case limitReached = "limit_reached"
        /// A temporary file of the external sort could not be created, written or read.
        case io
    }

    public var code: Code
    public var message: String
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { "\(code.rawValue): \(message)" }
}

/// Floor division (times may be negative).
@inline(__always)
func floorDivide(_ a: Int64, _ b: Int64) -> Int64 {
    let q = a / b
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
}
