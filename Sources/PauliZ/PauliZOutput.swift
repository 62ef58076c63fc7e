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
        let encoder = PauliZRowEncoder(format: format, keyName: keyName, windowMilliseconds: windowMilliseconds)
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

    /// Appends the row's line, newline included.
    public func append(_ row: PauliZRow, key: [UInt8], to bytes: inout [UInt8]) {
        bytes.append(contentsOf: opening)
        bytes.append(contentsOf: key)
        let integers: (Int64, Int64, Int64, Int64, Int64, Int64, Int64) = (
            row.windowStart, row.windowStart + windowMilliseconds, row.events, row.flips, row.up, row.down, row.netPolarity)
        separatorBytes.withUnsafeBufferPointer { separators in
            separatorStarts.withUnsafeBufferPointer { starts in
                func separator(_ field: Int, _ bytes: inout [UInt8]) {
                    bytes.append(contentsOf: UnsafeBufferPointer(rebasing: separators[starts[field]..<starts[field + 1]]))
                }
                func integer(_ field: Int, _ value: Int64, _ bytes: inout [UInt8]) {
                    separator(field, &bytes)
                    Self.appendInteger(value, to: &bytes)
                }
                func decimal(_ field: Int, _ value: Double?, _ bytes: inout [UInt8]) {
                    separator(field, &bytes)
                    if let value { bytes.append(contentsOf: PauliZOutput.decimal(value).utf8) } else { bytes.append(contentsOf: null) }
                }
                integer(0, integers.0, &bytes)
                integer(1, integers.1, &bytes)
                integer(2, integers.2, &bytes)
                integer(3, integers.3, &bytes)
                integer(4, integers.4, &bytes)
                integer(5, integers.5, &bytes)
                integer(6, integers.6, &bytes)
                decimal(7, row.flipRatePerMinute(windowMilliseconds: windowMilliseconds), &bytes)
                integer(8, row.readouts, &bytes)
                decimal(9, row.causeCoverage, &bytes)
                integer(10, row.chainBreaks, &bytes)
                integer(11, row.seqGaps, &bytes)
                integer(12, row.epochChanges, &bytes)
                integer(13, row.clockRegressions, &bytes)
                integer(14, row.knownMilliseconds, &bytes)
                decimal(15, row.zMean, &bytes)
                integer(16, row.stormMilliseconds, &bytes)
            }
        }
        bytes.append(contentsOf: closing)
    }

    @inline(__always)
    static func appendInteger(_ value: Int64, to bytes: inout [UInt8]) {
        if value >= 0 && value < 10 {
            bytes.append(UInt8(ascii: "0") &+ UInt8(value))
            return
        }
        var magnitude = value.magnitude
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var count = 0
            while magnitude > 0 {
                digits[19 - count] = UInt8(ascii: "0") &+ UInt8(magnitude % 10)
                magnitude /= 10
                count += 1
            }
            if value < 0 { bytes.append(UInt8(ascii: "-")) }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: digits[(20 - count)...]))
        }
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
