import LogFormat

/// How rows and episodes are printed (spec section 8): JSON lines, CSV with a header, or
/// an aligned table for people (ratios there to 4 decimals; JSON and CSV carry every
/// digit needed to round-trip the 64-bit float).
public enum PauliZFormat: String, Sendable, CaseIterable {
    case jsonl, csv, table
}

public enum PauliZOutput {
    /// The figures of section 5, in its order, after the key and the window.
    public static let figureNames = [
        "events", "flips", "up", "down", "net_polarity", "flip_rate_per_min", "readouts", "cause_coverage",
        "chain_breaks", "seq_gaps", "epoch_changes", "clock_regressions", "known_ms", "z_mean", "storm_ms",
    ]
    public static let episodeNames = ["resource", "start", "end", "flips", "peak"]

    public static func rowColumns(keyName: String) -> [String] { [keyName, "window_start", "window_end"] + figureNames }

    /// The header line, when the format has one.
    public static func rowHeader(_ format: PauliZFormat, keyName: String) -> String? {
        switch format {
        case .jsonl: return nil
        case .csv: return rowColumns(keyName: keyName).joined(separator: ",")
        case .table: return tableLine(rowColumns(keyName: keyName))
        }
    }

    public static func episodeHeader(_ format: PauliZFormat) -> String? {
        switch format {
        case .jsonl: return nil
        case .csv: return episodeNames.joined(separator: ",")
        case .table: return tableLine(episodeNames)
        }
    }

    /// One row. `nil` ratios print as JSON null, an empty CSV cell, or "-" in a table.
    public static func rowLine(_ format: PauliZFormat, keyName: String, key: String, row: PauliZRow, windowMilliseconds: Int64) -> String {
        if format == .table {
            return tableLine([key] + rowValues(row, windowMilliseconds: windowMilliseconds).map(tableCell))
        }
        var encoder = PauliZRowEncoder(format: format, keyName: keyName, windowMilliseconds: windowMilliseconds)
        var bytes: [UInt8] = []
        encoder.append(row, key: PauliZRowEncoder.keyBytes(key, format: format), to: &bytes)
        return String(decoding: bytes.dropLast(), as: UTF8.self)
    }

    public static func episodeLine(_ format: PauliZFormat, resource: String, episode: PauliZEpisode) -> String {
        let values: [Value] = [.integer(episode.start), episode.end.map(Value.integer) ?? .null, .integer(episode.flips), .integer(episode.peak)]
        switch format {
        case .jsonl:
            var text = "{\"resource\":\(StrictJSON.quote(resource))"
            for (name, value) in zip(episodeNames.dropFirst(), values) {
                text += ",\"\(name)\":"
                switch value {
                case .integer(let number): text += String(number)
                case .decimal(let number): text += decimal(number)
                case .null: text += "null"
                }
            }
            return text + "}"
        case .csv:
            return ([csvCell(resource)] + values.map { value in
                switch value {
                case .integer(let number): return String(number)
                case .decimal(let number): return decimal(number)
                case .null: return ""
                }
            }).joined(separator: ",")
        case .table:
            return tableLine([resource] + values.map(tableCell))
        }
    }

    enum Value {
        case integer(Int64)
        case decimal(Double)
        case null
    }

    static func rowValues(_ row: PauliZRow, windowMilliseconds: Int64) -> [Value] {
        [
            .integer(row.windowStart), .integer(row.windowStart + windowMilliseconds),
            .integer(row.events), .integer(row.flips), .integer(row.up), .integer(row.down), .integer(row.netPolarity),
            .decimal(row.flipRatePerMinute(windowMilliseconds: windowMilliseconds)), .integer(row.readouts),
            row.causeCoverage.map(Value.decimal) ?? .null,
            .integer(row.chainBreaks), .integer(row.seqGaps), .integer(row.epochChanges), .integer(row.clockRegressions),
            .integer(row.knownMilliseconds), row.zMean.map(Value.decimal) ?? .null, .integer(row.stormMilliseconds),
        ]
    }

    static func tableCell(_ value: Value) -> String {
        switch value {
        case .integer(let number): return String(number)
        case .decimal(let number): return fixed4(number)
        case .null: return "-"
        }
    }

    /// Shortest digits that read back as the same float (Swift's description does that);
    /// a whole number keeps its ".0" (still a JSON number).
    static func decimal(_ value: Double) -> String { value == 0 ? "0.0" : value.description }

    static func fixed4(_ value: Double) -> String {
        let scaled = (value * 10_000).rounded()
        let negative = scaled < 0
        let magnitude = Int64(abs(scaled))
        let fraction = String(magnitude % 10_000)
        return (negative ? "-" : "") + "\(magnitude / 10_000)." + String(repeating: "0", count: 4 - fraction.count) + fraction
    }

    static func csvCell(_ text: String) -> String {
        if text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) {
            var quoted = "\""
            for character in text {
                if character == "\"" { quoted += "\"" }
                quoted.append(character)
            }
            return quoted + "\""
        }
        return text
    }

    /// The key left-aligned in 32 columns (longer keys push the line), numbers
    /// right-aligned in columns as wide as their names or 14.
    static func tableLine(_ cells: [String]) -> String {
        var text = cells[0] + String(repeating: " ", count: max(0, 32 - cells[0].count))
        for (index, cell) in cells.enumerated().dropFirst() {
            let width = max(14, (index < rowColumnsForWidth.count ? rowColumnsForWidth[index].count : 0)) + 1
            text += String(repeating: " ", count: max(1, width - cell.count)) + cell
        }
        return text
    }

    private static let rowColumnsForWidth = rowColumns(keyName: "resource")
}

/// JSON lines and CSV rows written as bytes straight into an output buffer: rows can
/// number tens of millions, and building a `String` per figure cost more than the whole
/// aggregation (measured: three quarters of a replay's time). The key's quoted bytes are
/// made once per resource by the caller (`keyBytes`).
public struct PauliZRowEncoder {
    public let format: PauliZFormat
    let windowMilliseconds: Int64
    /// `{"resource":` (JSON) or nothing (CSV).
    private let opening: [UInt8]
    /// The text before each field after the key, one after another: `,"window_start":`,
    /// `,"window_end":`, ... (JSON) or "," each (CSV); field i is
    /// `separatorBytes[separatorStarts[i]..<separatorStarts[i + 1]]`.
    private let separatorBytes: [UInt8]
    private let separatorStarts: [Int]
    private let null: [UInt8]
    private let closing: [UInt8]
    /// The window's two fields as written (`,"window_start":...,"window_end":...`), kept
    /// while rows of one window follow each other, as they do in output order.
    private var windowText: [UInt8] = []
    private var windowTextStart: Int64?

    public init(format: PauliZFormat, keyName: String, windowMilliseconds: Int64) {
        precondition(format != .table, "tables are printed as text")
        self.format = format
        self.windowMilliseconds = windowMilliseconds
        let names = PauliZOutput.rowColumns(keyName: keyName).dropFirst()
        let separators = names.map { format == .jsonl ? Array(",\"\($0)\":".utf8) : [UInt8(ascii: ",")] }
        separatorBytes = separators.flatMap { $0 }
        separatorStarts = separators.reduce(into: [0]) { $0.append($0.last! + $1.count) }
        opening = format == .jsonl ? Array("{\"\(keyName)\":".utf8) : []
        null = format == .jsonl ? Array("null".utf8) : []
        closing = format == .jsonl ? Array("}\n".utf8) : [0x0A]
    }

    /// The key as it is printed: a JSON string, or a CSV cell.
    public static func keyBytes(_ key: String, format: PauliZFormat) -> [UInt8] {
        Array((format == .jsonl ? StrictJSON.quote(key) : PauliZOutput.csvCell(key)).utf8)
    }

    /// Appends the row's line, newline included. The line is written through a pointer
    /// into scratch space on the stack and appended once: one capacity check per row,
    /// not one per field and digit string.
    public mutating func append(_ row: PauliZRow, key: [UInt8], to bytes: inout [UInt8]) {
        if windowTextStart != row.windowStart { writeWindow(row.windowStart) }
        let bound = opening.count + key.count + separatorBytes.count + closing.count + Self.figureCount * Self.figureBytesMax
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: bound) { scratch in
            var out = LineWriter(scratch.baseAddress!)
            out.put(opening)
            out.put(key)
            separatorBytes.withUnsafeBufferPointer { separators in
                separatorStarts.withUnsafeBufferPointer { starts in
                    @inline(__always)
                    func separator(_ field: Int) {
                        out.put(UnsafeBufferPointer(rebasing: separators[starts[field]..<starts[field + 1]]))
                    }
                    @inline(__always)
                    func integer(_ field: Int, _ value: Int64) {
                        separator(field)
                        out.integer(value)
                    }
                    @inline(__always)
                    func decimal(_ field: Int, _ value: Double?) {
                        separator(field)
                        if let value { out.decimal(value) } else { out.put(null) }
                    }
                    out.put(windowText)
                    integer(2, row.events)
                    integer(3, row.flips)
                    integer(4, row.up)
                    integer(5, row.down)
                    integer(6, row.netPolarity)
                    decimal(7, row.flipRatePerMinute(windowMilliseconds: windowMilliseconds))
                    integer(8, row.readouts)
                    decimal(9, row.causeCoverage)
                    integer(10, row.chainBreaks)
                    integer(11, row.seqGaps)
                    integer(12, row.epochChanges)
                    integer(13, row.clockRegressions)
                    integer(14, row.knownMilliseconds)
                    decimal(15, row.zMean)
                    integer(16, row.stormMilliseconds)
                }
            }
            out.put(closing)
            precondition(out.written(from: scratch.baseAddress!) <= bound, "a row line outgrew its bound")
            bytes.append(contentsOf: UnsafeBufferPointer(start: scratch.baseAddress!, count: out.written(from: scratch.baseAddress!)))
        }
    }

    private mutating func writeWindow(_ start: Int64) {
        let text = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: separatorBytes.count + 2 * Self.figureBytesMax) { scratch in
            var out = LineWriter(scratch.baseAddress!)
            separatorBytes.withUnsafeBufferPointer { separators in
                out.put(UnsafeBufferPointer(rebasing: separators[separatorStarts[0]..<separatorStarts[1]]))
                out.integer(start)
                out.put(UnsafeBufferPointer(rebasing: separators[separatorStarts[1]..<separatorStarts[2]]))
                out.integer(start + windowMilliseconds)
            }
            return Array(UnsafeBufferPointer(start: scratch.baseAddress!, count: out.written(from: scratch.baseAddress!)))
        }
        windowText = text
        windowTextStart = start
    }

    /// Figures after the key, and the most bytes one takes: an Int64 in decimal is at most
    /// 20 characters, a Double's shortest round-trip text at most 24 ("-2.2250738585072014e-308").
    static let figureCount = 17
    static let figureBytesMax = 24
}

/// Writes a line's bytes forward from a pointer; the caller sized the space.
struct LineWriter {
    private var cursor: UnsafeMutablePointer<UInt8>

    init(_ start: UnsafeMutablePointer<UInt8>) { cursor = start }

    func written(from start: UnsafeMutablePointer<UInt8>) -> Int { cursor - start }

    @inline(__always)
    mutating func put(_ bytes: UnsafeBufferPointer<UInt8>) {
        guard let base = bytes.baseAddress else { return }
        cursor.update(from: base, count: bytes.count)
        cursor += bytes.count
    }

    @inline(__always)
    mutating func put(_ bytes: [UInt8]) {
        bytes.withUnsafeBufferPointer { put($0) }
    }

    /// Decimal digits, a "-" first when negative.
    @inline(__always)
    mutating func integer(_ value: Int64) {
        if value >= 0 && value < 10 {
            cursor.pointee = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: value)
            cursor += 1
            return
        }
        if value < 0 {
            cursor.pointee = UInt8(ascii: "-")
            cursor += 1
        }
        var magnitude = value.magnitude
        // An Int64's magnitude is below 10^19: at most 19 digits.
        var digits = 1
        var power: UInt64 = 10
        while digits < 19 && magnitude >= power {
            digits += 1
            power &*= 10
        }
        var position = cursor + digits
        cursor = position
        repeat {
            position -= 1
            position.pointee = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: magnitude % 10)
            magnitude /= 10
        } while magnitude > 0
    }

    /// The same text as `PauliZOutput.decimal` (Swift's shortest round-trip digits),
    /// whole numbers below 2^53 written directly as digits and ".0" as Swift writes them
    /// (most rates and many coverages and z_means are whole: 0, 1, -1).
    @inline(__always)
    mutating func decimal(_ value: Double) {
        if value.magnitude < 9_007_199_254_740_992, value == value.rounded(.towardZero) {
            integer(Int64(value))
            cursor[0] = UInt8(ascii: ".")
            cursor[1] = UInt8(ascii: "0")
            cursor += 2
            return
        }
        var text = PauliZOutput.decimal(value)
        text.withUTF8 { put($0) }
    }
}

/// Rollups by prefix depth (spec section 7): feeds on rows in output order and yields
/// group rows in output order (window start, then group bytewise).
public struct PauliZRollup {
    public let depth: Int
    private var groups = ByteStringTable()
    private var groupOfResource: [Int32] = []
    private var windowStart: Int64?
    private var current: [Int32: PauliZRow] = [:]

    public init(depth: Int) {
        precondition(depth >= 1, "a group depth is at least 1")
        self.depth = depth
    }

    /// The group of a resource: its first `depth` segments split on "/".
    public static func group(of resource: String, depth: Int) -> String {
        var segments = 0
        var end = resource.utf8.endIndex
        for index in resource.utf8.indices where resource.utf8[index] == UInt8(ascii: "/") {
            segments += 1
            if segments == depth {
                end = index
                break
            }
        }
        return String(resource[..<end])
    }

    public mutating func add(_ row: PauliZRow, resources: ByteStringTable, emit: (String, PauliZRow) throws -> Void) rethrows {
        if let windowStart, windowStart != row.windowStart { try flush(emit) }
        windowStart = row.windowStart
        while groupOfResource.count <= Int(row.key) {
            let name = Self.group(of: resources.string(Int32(groupOfResource.count)), depth: depth)
            groupOfResource.append(groups.intern(name))
        }
        let group = groupOfResource[Int(row.key)]
        var sum = current[group] ?? PauliZRow(windowStart: row.windowStart, key: group)
        sum.add(row)
        current[group] = sum
    }

    public mutating func flush(_ emit: (String, PauliZRow) throws -> Void) rethrows {
        let table = groups
        for group in current.keys.sorted(by: { table.less($0, $1) }) {
            try emit(groups.string(group), current[group]!)
        }
        current.removeAll(keepingCapacity: true)
        windowStart = nil
    }
}
