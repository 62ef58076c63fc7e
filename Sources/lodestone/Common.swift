import ArgumentParser
import Foundation
import LogClient
import LogStorage
import PauliZ
import WireProtocol

/// `--server` and `--token`, for every command that talks to a server.
struct ServerOptions: ParsableArguments {
    @Option(help: "The server, as HOST:PORT.")
    var server = "127.0.0.1:7400"

    @Option(help: "The auth token (default: the LODESTONE_TOKEN environment variable).")
    var token: String?

    var resolvedToken: String { token ?? ProcessInfo.processInfo.environment["LODESTONE_TOKEN"] ?? "" }

    func address() throws -> (host: String, port: Int) { try parseAddress(server, option: "--server") }

    func connect() async throws -> LodestoneConnection {
        let (host, port) = try address()
        do {
            return try await LodestoneConnection.connect(host: host, port: port, token: resolvedToken, clientName: "lodestone-cli")
        } catch {
            // A refusal (bad token, old version) stays a server error: retrying will not help.
            if case .server = error { throw error }
            throw CommandFailure("cannot talk to the server at \(server): \(error)")
        }
    }
}

/// A failure to report on stderr and exit with status 1 (2 for usage problems).
struct CommandFailure: Error, CustomStringConvertible {
    var description: String
    var status: Int32
    init(_ description: String, status: Int32 = 1) {
        self.description = description
        self.status = status
    }
}

/// Runs a command body, turning failures into a message and an exit status.
func reporting(_ command: String, _ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let failure as CommandFailure {
        printError("lodestone \(command): \(failure.description)")
        throw ExitCode(failure.status)
    } catch let error as ClientError {
        printError("lodestone \(command): \(error)")
        throw ExitCode(1)
    } catch let error as StorageError {
        printError("lodestone \(command): \(error.message)")
        throw ExitCode(1)
    } catch let error as PauliZError {
        printError("lodestone \(command): \(error.message)")
        // A query that cannot be asked is a usage error, as for a bad option.
        throw ExitCode(error.code == .invalidArgument ? 2 : 1)
    }
}

func parseAddress(_ text: String, option: String) throws -> (host: String, port: Int) {
    guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
        throw CommandFailure("\(option) must be HOST:PORT, got \"\(text)\"", status: 2)
    }
    var host = String(text[..<colon])
    if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
    return (host, port)
}

/// Durations: `500ms`, `60s`, `5m`, `1h`, `7d` (a whole number and a unit).
func parseDuration(_ text: String, option: String) throws -> Int64 {
    let units: [(String, Int64)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
    for (unit, factor) in units where text.hasSuffix(unit) {
        let number = text.dropLast(unit.count)
        if let value = Int64(number), value >= 0, !number.hasPrefix("+") {
            let (result, overflow) = value.multipliedReportingOverflow(by: factor)
            if !overflow { return result }
        }
    }
    throw CommandFailure("\(option) must be a duration such as 500ms, 60s, 5m, 1h or 7d, got \"\(text)\"", status: 2)
}

/// Times: milliseconds since the epoch (negative too) or RFC 3339.
func parseTime(_ text: String, option: String) throws -> Int64 {
    if let milliseconds = Int64(text) { return milliseconds }
    let formatter = ISO8601DateFormatter()
    for options: ISO8601DateFormatter.Options in [[.withInternetDateTime, .withFractionalSeconds], [.withInternetDateTime]] {
        formatter.formatOptions = options
        if let date = formatter.date(from: text) { return Int64((date.timeIntervalSince1970 * 1000).rounded()) }
    }
    throw CommandFailure("\(option) must be milliseconds since the epoch or an RFC 3339 time, got \"\(text)\"", status: 2)
}

/// Seconds elapsed since `start`, by the monotonic clock.
func secondsSince(_ start: ContinuousClock.Instant) -> Double {
    let elapsed = (ContinuousClock.now - start).components
    return Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
}

/// One line of stdin, without its newline (and a carriage return before it), or the
/// length reached by a line too long to keep.
enum InputLine: Sendable {
    case line([UInt8])
    case tooLong(Int)
}

/// Lines of stdin as bytes (not repaired: invalid UTF-8 stays visible to the JSON reader),
/// read on a thread of their own (a blocking read on the concurrency pool would stall it)
/// and handed over as an async sequence. A line longer than `lineBytesMax` is not kept;
/// the rest of it is skipped and it comes through as `.tooLong`. A last line without a
/// newline still counts; an empty input has no lines.
func standardInputLines(lineBytesMax: Int) -> AsyncStream<InputLine> {
    AsyncStream(bufferingPolicy: .bufferingOldest(1024)) { continuation in
        let thread = Thread {
            // A full buffer hands the line back: wait for the reader to take some.
            func deliver(_ line: InputLine) {
                var pending = line
                while case .dropped(let dropped) = continuation.yield(pending) {
                    pending = dropped
                    usleep(500)
                }
            }
            var current: [UInt8] = []
            var skipped = 0
            var chunk = [UInt8](repeating: 0, count: 1 << 16)
            var sawAny = false
            while true {
                let count = chunk.withUnsafeMutableBytes { read(STDIN_FILENO, $0.baseAddress, $0.count) }
                if count < 0 && errno == EINTR { continue }
                if count <= 0 { break }
                sawAny = true
                var start = 0
                for index in 0..<count where chunk[index] == 0x0A {
                    append(chunk[start..<index])
                    finishLine()
                    start = index + 1
                }
                append(chunk[start..<count])
            }
            if sawAny && (!current.isEmpty || skipped > 0) { finishLine() }
            continuation.finish()

            func append(_ bytes: ArraySlice<UInt8>) {
                if skipped > 0 || current.count + bytes.count > lineBytesMax {
                    skipped += current.count + bytes.count
                    current.removeAll()
                } else {
                    current.append(contentsOf: bytes)
                }
            }
            func finishLine() {
                if skipped > 0 {
                    deliver(.tooLong(skipped))
                } else {
                    if current.last == 0x0D { current.removeLast() }
                    deliver(.line(current))
                }
                current = []
                skipped = 0
            }
        }
        thread.start()
    }
}
