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
        let rate = row.flipRatePerMinute(windowMilliseconds: windowMilliseconds)
        let values: [Value] = [
            .integer(row.windowStart), .integer(row.windowStart + windowMilliseconds),
            .integer(row.events), .integer(row.flips), .integer(row.up), .integer(row.down), .integer(row.netPolarity),
            .decimal(rate), .integer(row.readouts), row.causeCoverage.map(Value.decimal) ?? .null,
            .integer(row.chainBreaks), .integer(row.seqGaps), .integer(row.epochChanges), .integer(row.clockRegressions),
            .integer(row.knownMilliseconds), row.zMean.map(Value.decimal) ?? .null, .integer(row.stormMilliseconds),
        ]
        return line(format, names: rowColumns(keyName: keyName), key: key, values: values)
    }

    public static func episodeLine(_ format: PauliZFormat, resource: String, episode: PauliZEpisode) -> String {
        let values: [Value] = [.integer(episode.start), episode.end.map(Value.integer) ?? .null, .integer(episode.flips), .integer(episode.peak)]
        return line(format, names: episodeNames, key: resource, values: values)
    }

    enum Value {
        case integer(Int64)
        case decimal(Double)
        case null
    }

    private static func line(_ format: PauliZFormat, names: [String], key: String, values: [Value]) -> String {
        switch format {
        case .jsonl:
            var text = "{\"\(names[0])\":\(StrictJSON.quote(key))"
            for (name, value) in zip(names.dropFirst(), values) {
                text += ",\"\(name)\":"
                switch value {
                case .integer(let number): text += String(number)
                case .decimal(let number): text += decimal(number)
                case .null: text += "null"
                }
            }
            return text + "}"
        case .csv:
            var cells = [csvCell(key)]
            for value in values {
                switch value {
                case .integer(let number): cells.append(String(number))
                case .decimal(let number): cells.append(decimal(number))
                case .null: cells.append("")
                }
            }
            return cells.joined(separator: ",")
        case .table:
            var cells = [key]
            for value in values {
                switch value {
                case .integer(let number): cells.append(String(number))
                case .decimal(let number): cells.append(fixed4(number))
                case .null: cells.append("-")
                }
            }
            return tableLine(cells)
        }
    }

    /// Shortest digits that read back as the same float (Swift's description does that);
    /// a whole number keeps its ".0" (still a JSON number).
    static func decimal(_ value: Double) -> String { value == 0 ? "0.0" : "\(value)" }

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
