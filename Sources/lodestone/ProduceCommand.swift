import ArgumentParser
import Foundation
import LogClient
import LogFormat
import Synchronization
import WireProtocol

struct ProduceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "produce",
        abstract: "Append JSON lines from stdin; one acknowledgement line per input line on stdout.",
        discussion: """
            Raw topics: {"resource", "value" | "value_base64", "headers"?, "time"?, "partition"?}. \
            Flip topics: the flip event of Docs/spec/pauli-z.md section 1. Each input line gets \
            {"line", "outcome", "partition", "offset"} (and "error" unless the outcome is \
            committed, duplicate or sent), in input order. Exit status 0 when every line is \
            committed, duplicate or sent, 1 otherwise. When the server cannot be reached at \
            the start (tried for about 13 s) or refuses the topic or token, produce reads no input \
            and exits 1.
            """)

    @OptionGroup var server: ServerOptions
    @Option(help: "The topic.") var topic: String
    @Option(help: "durable (after fsync), written (after write) or none (no reply).") var ack = "durable"
    @Option(help: "A producer name: the named identity, which fences its older incarnations.") var producer: String?
    @Option(help: "Longest wait for a batch to fill, a duration.") var linger = "5ms"
    @Flag(help: "Compress batches with LZ4.") var lz4 = false

    /// Input lines read ahead of their acknowledgement, at most (and their bytes).
    static let outstandingLinesMax = 50_000
    static let outstandingBytesMax = 64 << 20

    func run() async throws {
        var allAccepted = false
        try await reporting("produce") {
            guard let ackMode = ["durable": AppendRequest.Ack.durable, "written": .written, "none": .none][ack] else {
                throw CommandFailure("--ack must be durable, written or none, got \"\(ack)\"", status: 2)
            }
            if let producer, producer.isEmpty || producer.utf8.count > Limits.producerNameBytesMax {
                throw CommandFailure("--producer must be 1 to \(Limits.producerNameBytesMax) bytes", status: 2)
            }
            var configuration = ProducerConfiguration()
            configuration.ack = ackMode
            configuration.lingerMilliseconds = try parseDuration(linger, option: "--linger")
            configuration.compression = lz4 ? .lz4 : .none
            configuration.clientName = "lodestone-produce"
            let (host, port) = try server.address()
            let client = IdempotentProducer(host: host, port: port, token: server.resolvedToken, topic: topic, name: producer, configuration: configuration)
            try await start(client)
            guard let info = await client.topicDescription else { throw CommandFailure("the server did not describe \(topic)") }

            let printer = AcknowledgementPrinter()
            let progress = ProgressLine { printer.progressText() }
            var lineNumber = 0
            for await input in standardInputLines(lineBytesMax: RecordLines.lineBytesMax) {
                lineNumber += 1
                let number = lineNumber
                await printer.waitForRoom(linesMax: Self.outstandingLinesMax, bytesMax: Self.outstandingBytesMax)
                switch input {
                case .tooLong(let bytes):
                    printer.expect(number, bytes: 0)
                    printer.resolve(number, .invalid("the line is longer than \(RecordLines.lineBytesMax) bytes (\(bytes) or more)"))
                case .line(let bytes):
                    printer.expect(number, bytes: bytes.count)
                    do {
                        let record = try RecordLines.record(from: bytes, kind: info.kind)
                        await client.send(record) { outcome in printer.resolve(number, outcome) }
                    } catch {
                        printer.resolve(number, .invalid("\(error)"))
                    }
                }
            }
            await client.close()
            await printer.waitUntilDone()
            await progress.finish(printer.progressText())
            allAccepted = printer.allAccepted
        }
        if !allAccepted { throw ExitCode(1) }
    }

    /// Starts the producer, retrying for a while when the server cannot be reached (it may
    /// be restarting); a refusal (unknown topic, bad token) ends at once.
    func start(_ client: IdempotentProducer) async throws {
        var backoff = 50
        for attempt in 1...12 {
            do {
                try await client.start()
                return
            } catch {
                if case .server = error { throw CommandFailure("\(error)") }
                if attempt == 12 { throw CommandFailure("cannot talk to the server at \(server.server): \(error)") }
            }
            try await Task.sleep(for: .milliseconds(backoff))
            backoff = min(backoff * 2, 2000)
        }
    }
}

/// Prints acknowledgement lines in input order as outcomes arrive in any order, and keeps
/// count of what is outstanding so that reading stays a bounded distance ahead.
final class AcknowledgementPrinter: Sendable {
    struct State {
        var outcomes: [Int: RecordOutcome] = [:]
        var bytes: [Int: Int] = [:]
        var nextToPrint = 1
        var lastExpected = 0
        var outstandingBytes = 0
        var counts: [String: Int] = [:]
    }

    let state = Mutex(State())
    let started = ContinuousClock.now

    func expect(_ line: Int, bytes: Int) {
        state.withLock { state in
            state.lastExpected = line
            state.bytes[line] = bytes
            state.outstandingBytes += bytes
        }
    }

    func resolve(_ line: Int, _ outcome: RecordOutcome) {
        state.withLock { state in
            state.outcomes[line] = outcome
            var text = ""
            while let next = state.outcomes.removeValue(forKey: state.nextToPrint) {
                text += RecordLines.acknowledgement(line: state.nextToPrint, outcome: next) + "\n"
                state.outstandingBytes -= state.bytes.removeValue(forKey: state.nextToPrint) ?? 0
                state.counts[next.name, default: 0] += 1
                state.nextToPrint += 1
            }
            if !text.isEmpty { writeAll(text, to: STDOUT_FILENO) }
        }
    }

    func waitForRoom(linesMax: Int, bytesMax: Int) async {
        while state.withLock({ $0.lastExpected - $0.nextToPrint + 1 >= linesMax || $0.outstandingBytes >= bytesMax }) {
            try? await Task.sleep(for: .milliseconds(1))
        }
    }

    func waitUntilDone() async {
        while state.withLock({ $0.nextToPrint <= $0.lastExpected }) {
            try? await Task.sleep(for: .milliseconds(1))
        }
    }

    var allAccepted: Bool {
        state.withLock { state in state.counts.allSatisfy { ["committed", "duplicate", "sent"].contains($0.key) } }
    }

    func progressText() -> String {
        let (printed, counts) = state.withLock { ($0.nextToPrint - 1, $0.counts) }
        let seconds = max(0.001, secondsSince(started))
        let breakdown = counts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        return "produce: \(printed) lines acknowledged (\(breakdown)), \(Int(Double(printed) / seconds)) lines/s"
    }
}
