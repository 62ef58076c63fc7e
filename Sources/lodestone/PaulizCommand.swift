import ArgumentParser
import Foundation
import LogIO
import LogStorage
import PauliZ
import PauliZReplay
import LogClient
import LogFormat
import WireProtocol

struct PaulizCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pauliz",
        abstract: "Pauli-Z rows (direction and rate of state flips per resource and window) or storm episodes of a flip topic.",
        discussion: """
            Rows follow the Pauli-Z specification (Docs/spec/pauli-z.md): one per resource and window with at least one \
            event, ordered by window start, then resource. --storms prints storm episodes \
            instead. --data DIR replays a stopped server's data directory (read-only; \
            refused while a server holds it); without it the server (--server) answers \
            from its durable data. Storm parameters default to the topic's. \
            Docs/pauliz.md explains every figure. Exit status: 0 done, 1 the query failed \
            (corruption, unknown topic, a server holding the directory), 2 usage.
            """)

    @OptionGroup var server: ServerOptions

    @Option(help: "A stopped server's data directory, replayed offline.")
    var data: String?

    @Option(help: "The flip topic.")
    var topic: String

    @Option(help: "Window size: a duration such as 60s, 1m, 1h.")
    var window: String

    @Option(help: "Hop for hopping windows (must divide the window); default: the window (tumbling).")
    var hop: String?

    @Option(help: "Only windows starting at or after this time (milliseconds or RFC 3339).")
    var from: String?

    @Option(help: "Only windows starting before this time.")
    var to: String?

    @Option(help: "Only this resource.")
    var resource: String?

    @Option(help: "Only resources equal to P or starting with P/.")
    var prefix: String?

    @Option(name: .customLong("group-depth"), help: "Roll rows up by the first N segments of the resource split on /.")
    var groupDepth: Int?

    @Flag(help: "Print storm episodes instead of rows.")
    var storms = false

    @Option(name: .customLong("storm-interval"), help: "Storm interval S (default: the topic's).")
    var stormInterval: String?

    @Option(name: .customLong("storm-enter"), help: "Storm enter threshold E (default: the topic's).")
    var stormEnter: Int?

    @Option(name: .customLong("storm-exit"), help: "Storm exit threshold X (default: the topic's).")
    var stormExit: Int?

    @Option(help: "Output format: jsonl, csv or table.")
    var format: String = "jsonl"

    @Option(name: .customLong("sort-memory"), help: "MiB of finished rows kept in memory before sorted runs spill to temporary files (TMPDIR).")
    var sortMemory: Int = Limits.paulizSortMemoryBytesDefault >> 20

    func validate() throws {
        if resource != nil && prefix != nil { throw ValidationError("give --resource or --prefix, not both") }
        if let groupDepth, groupDepth < 1 { throw ValidationError("--group-depth must be at least 1") }
        if storms && groupDepth != nil { throw ValidationError("storm episodes are per resource: --group-depth does not apply to --storms") }
        if sortMemory < 1 || sortMemory > 1 << 20 { throw ValidationError("--sort-memory must be 1 to 1048576 MiB") }
        if PauliZFormat(rawValue: format) == nil { throw ValidationError("--format must be jsonl, csv or table, got \"\(format)\"") }
    }

    func run() async throws {
        try await reporting("pauliz") { try await runQuery() }
    }

    private func runQuery() async throws {
        let format = PauliZFormat(rawValue: format)!
        let windowMilliseconds = try parseDuration(window, option: "--window")
        let hopMilliseconds = try hop.map { try parseDuration($0, option: "--hop") }
        let fromTime = try from.map { try parseTime($0, option: "--from") }
        let toTime = try to.map { try parseTime($0, option: "--to") }
        let interval = try stormInterval.map { try parseDuration($0, option: "--storm-interval") }
        let filter: ResourceFilter = resource.map { .exact($0) } ?? prefix.map { .prefix($0) } ?? .all
        let started = ContinuousClock.now
        if let data {
            let progress = ReplayProgress()
            let (result, statistics) = try PauliZReplay.run(
                directory: data, topic: topic, filter: filter, rowsInMemoryMax: sortMemory << 20 / MemoryLayout<PauliZRow>.stride, configure: { configuration in
                let defaults = PauliZReplay.topicDefaults(configuration, intervalMilliseconds: interval, enter: stormEnter, exit: stormExit)
                let query = PauliZQuery(windowMilliseconds: windowMilliseconds, hopMilliseconds: hopMilliseconds, from: fromTime, to: toTime,
                                        storm: defaults.storm, polarityMap: defaults.polarityMap)
                // An invalid query is a PauliZError of code invalid_argument: status 2 (Common.swift).
                try query.validate()
                return query
            }, progress: progress.report)
            try print(Answer(local: result), format: format, windowMilliseconds: windowMilliseconds)
            let torn = statistics.tornBytes > 0 ? String(format: "; %lld torn bytes left unread", statistics.tornBytes) : ""
            progress.finish(String(
                format: "pauliz: %lld events (%lld selected) in %d partitions, %.1f s", statistics.events, statistics.eventsSelected,
                statistics.partitions, secondsSince(started)) + torn)
        } else {
            // Checked here too, so a usage problem is status 2 without a server; storm
            // parameters only as far as the topic's (which only the server knows) allow.
            do {
                try PauliZQuery(windowMilliseconds: windowMilliseconds, hopMilliseconds: hopMilliseconds, from: fromTime, to: toTime).validate()
                try StormParameters.check(intervalMilliseconds: interval, enter: stormEnter, exit: stormExit)
            } catch {
                throw CommandFailure(error.message, status: 2)
            }
            let request = PaulizRequest(
                topic: topic, windowMilliseconds: windowMilliseconds, hopMilliseconds: hopMilliseconds ?? windowMilliseconds, from: fromTime, to: toTime,
                filter: resource.map { .exact($0) } ?? prefix.map { .prefix($0) } ?? .all, stormIntervalMilliseconds: interval,
                stormEnter: stormEnter.map { Int32(clamping: $0) }, stormExit: stormExit.map { Int32(clamping: $0) })
            let connection = try await server.connect()
            defer { Task { await connection.close() } }
            guard case .pauliz(let reply) = try await connection.send(.pauliz(request), timeoutMilliseconds: 600_000) else {
                throw CommandFailure("unexpected reply")
            }
            try print(Answer(remote: reply), format: format, windowMilliseconds: windowMilliseconds)
        }
    }

    /// Rows and episodes, from a local replay or a server's answer, as the printer reads them.
    struct Answer {
        var resources: ByteStringTable
        var forEachRow: ((PauliZRow) throws -> Void) throws -> Void
        var episodes: [PauliZEpisode]

        init(local result: PauliZResult) {
            resources = result.resources
            forEachRow = { body in try result.forEachRow(body) }
            episodes = result.episodes
        }

        init(remote reply: PaulizReply) {
            var table = ByteStringTable()
            var rows: [PauliZRow] = []
            for wire in reply.rows {
                rows.append(wire.pauliZRow(key: table.intern(wire.resource)))
            }
            episodes = reply.episodes.map { PauliZEpisode(resource: table.intern($0.resource), start: $0.start, end: $0.end, flips: $0.flips, peak: $0.peak) }
            resources = table
            forEachRow = { body in for row in rows { try body(row) } }
        }
    }

    private func print(_ answer: Answer, format: PauliZFormat, windowMilliseconds: Int64) throws {
        var output = OutputBuffer()
        if storms {
            if let header = PauliZOutput.episodeHeader(format) { output.line(header) }
            for episode in answer.episodes {
                output.line(PauliZOutput.episodeLine(format, resource: answer.resources.string(episode.resource), episode: episode))
            }
        } else if let groupDepth {
            var encoder = RowPrinter(format: format, keyName: "group", windowMilliseconds: windowMilliseconds)
            encoder.header(into: &output)
            var rollup = PauliZRollup(depth: groupDepth)
            var groupKeys: [String: [UInt8]] = [:]
            let emit = { (group: String, row: PauliZRow) in
                encoder.print(row, key: group, cachedKey: &groupKeys[group], into: &output)
            }
            try answer.forEachRow { row in rollup.add(row, resources: answer.resources, emit: emit) }
            rollup.flush(emit)
        } else {
            var encoder = RowPrinter(format: format, keyName: "resource", windowMilliseconds: windowMilliseconds)
            encoder.header(into: &output)
            var keys = [[UInt8]?](repeating: nil, count: answer.resources.count)
            try answer.forEachRow { row in
                encoder.print(row, key: answer.resources.string(row.key), cachedKey: &keys[Int(row.key)], into: &output)
            }
        }
        output.flush()
    }
}

/// Progress of a replay on stderr, at most once a second, when stderr is a terminal.
final class ReplayProgress {
    private let enabled = isatty(STDERR_FILENO) != 0
    private var last = ContinuousClock.now
    private var shown = false

    func report(_ done: Int64, _ total: Int64) {
        guard enabled, ContinuousClock.now - last >= .seconds(1) else { return }
        last = ContinuousClock.now
        shown = true
        let percent = total > 0 ? Double(done) * 100 / Double(total) : 100
        writeAll(String(format: "\r\u{1B}[Kpauliz: %.0f%% of %lld MB read", percent, total >> 20), to: STDERR_FILENO)
    }

    func finish(_ summary: String) {
        guard enabled else { return }
        writeAll((shown ? "\r\u{1B}[K" : "") + summary + "\n", to: STDERR_FILENO)
    }
}

/// Rows in the chosen format: JSON lines and CSV as bytes (the key's bytes made once per
/// key), tables as text.
struct RowPrinter {
    let format: PauliZFormat
    let keyName: String
    let windowMilliseconds: Int64
    private var encoder: PauliZRowEncoder?

    init(format: PauliZFormat, keyName: String, windowMilliseconds: Int64) {
        self.format = format
        self.keyName = keyName
        self.windowMilliseconds = windowMilliseconds
        encoder = format == .table ? nil : PauliZRowEncoder(format: format, keyName: keyName, windowMilliseconds: windowMilliseconds)
    }

    func header(into output: inout OutputBuffer) {
        if let header = PauliZOutput.rowHeader(format, keyName: keyName) { output.line(header) }
    }

    /// `key` is read only when `cachedKey` is nil (the first row of that key).
    mutating func print(_ row: PauliZRow, key: @autoclosure () -> String, cachedKey: inout [UInt8]?, into output: inout OutputBuffer) {
        guard encoder != nil else {
            output.line(PauliZOutput.rowLine(format, keyName: keyName, key: key(), row: row, windowMilliseconds: windowMilliseconds))
            return
        }
        if cachedKey == nil { cachedKey = PauliZRowEncoder.keyBytes(key(), format: format) }
        output.append { encoder!.append(row, key: cachedKey!, to: &$0) }
    }
}

/// Lines to stdout through a 256 KiB buffer (rows can number millions).
struct OutputBuffer {
    private var bytes: [UInt8] = []

    /// Lets `body` append bytes (whole lines) to the buffer.
    mutating func append(_ body: (inout [UInt8]) -> Void) {
        body(&bytes)
        if bytes.count >= Self.flushBytes { flush() }
    }

    /// Written out when this much is buffered (a 4 MiB buffer wrote no faster, measured).
    static let flushBytes = 1 << 18

    init() { bytes.reserveCapacity(Self.flushBytes) }

    mutating func line(_ text: String) {
        bytes.append(contentsOf: text.utf8)
        bytes.append(0x0A)
        if bytes.count >= Self.flushBytes { flush() }
    }

    mutating func flush() {
        bytes.withUnsafeBytes { writeAll($0, to: STDOUT_FILENO) }
        bytes.removeAll(keepingCapacity: true)
    }
}
