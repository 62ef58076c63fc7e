#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Puts rows in output order (window start, then resource bytewise) with bounded memory:
/// the engine hands finished rows over in chunks; past a limit the chunks in memory are
/// sorted and written to a temporary file as one run; `drain` sorts the chunks left and
/// merges them with the runs. A resource whose clock lags
/// can add rows to early windows late in the log, so no row is final before the end.
///
/// Runs hold the rows' bytes as they are in memory (a temporary file of this process,
/// read back by it). Files are removed as soon as they are opened, so nothing is left
/// behind, whatever happens to the process.
final class RowSorter {
    /// Chunks of finished rows kept in memory, each sorted when drained.
    private var chunks: [[PauliZRow]] = []
    private(set) var memoryRows = 0
    private let temporaryDirectory: String
    private var runs: [(descriptor: Int32, rows: Int)] = []

    init(temporaryDirectory: String?) {
        self.temporaryDirectory = temporaryDirectory ?? RowSorter.defaultTemporaryDirectory()
    }

    deinit {
        for run in runs { close(run.descriptor) }
    }

    static func defaultTemporaryDirectory() -> String {
        if let value = getenv("TMPDIR"), let text = String(validatingCString: value), !text.isEmpty { return text }
        return "/tmp"
    }

    /// The chunks kept in memory (not sorted), for a live state's snapshot.
    var memoryChunks: [[PauliZRow]] { chunks }

    /// Takes the chunks kept in memory out (a live state that forgets old windows).
    func takeChunks() -> [[PauliZRow]] {
        defer {
            chunks = []
            memoryRows = 0
        }
        return chunks
    }

    /// Takes a chunk of rows, to be sorted when drained (or spilled).
    func keep(_ rows: [PauliZRow]) {
        guard !rows.isEmpty else { return }
        chunks.append(rows)
        memoryRows += rows.count
    }

    static func ordered(_ resources: ByteStringTable) -> (PauliZRow, PauliZRow) -> Bool {
        { a, b in a.windowStart != b.windowStart ? a.windowStart < b.windowStart : resources.less(a.key, b.key) }
    }

    /// Sorts the rows in memory and writes them to a temporary file as one run.
    func spill(resources: ByteStringTable) throws(PauliZError) {
        var rows = chunks.flatMap { $0 }
        chunks = []
        memoryRows = 0
        rows.sort(by: Self.ordered(resources))
        var template = Array("\(temporaryDirectory)/lodestone-pauliz-XXXXXX".utf8CString)
        let descriptor = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        if descriptor < 0 { throw PauliZError(.io, "cannot create a temporary file in \(temporaryDirectory): \(String(cString: strerror(errno)))") }
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        let written = rows.withUnsafeBytes { raw -> Bool in
            var offset = 0
            while offset < raw.count {
                let n = write(descriptor, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                offset += n
            }
            return true
        }
        if !written {
            let reason = String(cString: strerror(errno))
            close(descriptor)
            throw PauliZError(.io, "cannot write a sorted run to \(temporaryDirectory): \(reason)")
        }
        runs.append((descriptor, rows.count))
    }

    /// Every row once, in order. The sorter is empty afterwards.
    func drain(resources: ByteStringTable, _ body: (PauliZRow) throws -> Void) throws {
        // Every resource is known now: compare ranks (bytewise order of the names, once)
        // instead of names, for the last sort and the merge alike.
        var rank = [Int32](repeating: 0, count: resources.count)
        for (position, id) in (0..<Int32(resources.count)).sorted(by: { resources.less($0, $1) }).enumerated() { rank[Int(id)] = Int32(position) }
        let ordered = { (a: PauliZRow, b: PauliZRow) -> Bool in
            a.windowStart != b.windowStart ? a.windowStart < b.windowStart : rank[Int(a.key)] < rank[Int(b.key)]
        }
        for index in chunks.indices { chunks[index].sort(by: ordered) }
        if runs.isEmpty && chunks.count <= 1 {
            for row in chunks.first ?? [] { try body(row) }
            chunks.removeAll()
            memoryRows = 0
            return
        }
        var sources: [RunReader] = try runs.map { run in try RunReader(descriptor: run.descriptor, rows: run.rows) }
        sources += chunks.map { RunReader(memory: $0) }
        chunks.removeAll()
        memoryRows = 0
        // A k-way merge over the runs' heads; runs are few (rows / limit), so a linear
        // scan for the smallest head costs less than keeping a heap.
        while true {
            var best: Int?
            for index in sources.indices {
                guard let head = sources[index].head else { continue }
                if let current = best, !ordered(head, sources[current].head!) { continue }
                best = index
            }
            guard let best else { break }
            try body(sources[best].head!)
            try sources[best].advance()
        }
        for run in runs { close(run.descriptor) }
        runs.removeAll()
    }
}

/// Reads one sorted run back in chunks.
private struct RunReader {
    private var descriptor: Int32 = -1
    private var remaining: Int
    private var chunk: [PauliZRow] = []
    private var position = 0
    private static let chunkRows = 1 << 14

    init(descriptor: Int32, rows: Int) throws {
        self.descriptor = descriptor
        remaining = rows
        if lseek(descriptor, 0, SEEK_SET) < 0 { throw PauliZError(.io, "cannot rewind a sorted run: \(String(cString: strerror(errno)))") }
        try refill()
    }

    init(memory: [PauliZRow]) {
        chunk = memory
        remaining = 0
    }

    var head: PauliZRow? { position < chunk.count ? chunk[position] : nil }

    mutating func advance() throws {
        position += 1
        guard position == chunk.count else { return }
        if remaining > 0 {
            try refill()
        } else {
            // Done: give the memory back now, not when the merge ends. Chunks finish
            // about in window order, so most are done long before the last row, and the
            // pages they free take the output's next writes.
            chunk = []
            position = 0
        }
    }

    private mutating func refill() throws {
        let count = min(remaining, Self.chunkRows)
        chunk = [PauliZRow](repeating: PauliZRow(windowStart: 0, key: 0), count: count)
        let descriptor = descriptor
        let ok = chunk.withUnsafeMutableBytes { raw -> Bool in
            var offset = 0
            while offset < raw.count {
                let n = read(descriptor, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return false }
                offset += n
            }
            return true
        }
        if !ok { throw PauliZError(.io, "cannot read back a sorted run") }
        remaining -= count
        position = 0
    }
}
