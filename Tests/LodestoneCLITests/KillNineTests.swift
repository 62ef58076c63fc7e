import Foundation
import LogSimulation
import XCTest

/// The server killed with SIGKILL again and again while `lodestone produce` streams flip
/// events with durable acks, restarted each time on the same port: every acknowledged
/// event is present exactly once, where its acknowledgement said, and nothing is stored
/// twice. `LODESTONE_KILL_LOOPS` sets the number of kills (3 by default, which CI runs;
/// Tools/kill-loop runs 20 or more).
final class KillNineTests: XCTestCase {
    func testNoAcknowledgedEventIsLostOrDuplicatedAcrossKills() throws {
        let kills = Int(ProcessInfo.processInfo.environment["LODESTONE_KILL_LOOPS"] ?? "") ?? 3
        let seed = UInt64(ProcessInfo.processInfo.environment["LODESTONE_KILL_SEED"] ?? "") ?? 20_261_124
        var random = SplitMix64(seed: seed)
        let directory = try Lodestone.temporaryDirectory(self)
        let server = try ServerProcess(data: directory + "/data")
        defer { server.terminate() }
        let create = try Lodestone.run(["topic", "create", "crash/flips", "--partitions", "3", "--kind", "flip", "--server", server.address])
        XCTAssertEqual(create.status, 0, create.error)

        // The producer: one process for the whole run, so its identity and its retries
        // carry across every restart of the server.
        try writeFile(directory + "/acks", Data())
        try writeFile(directory + "/produce.err", Data())
        let input = Pipe()
        let producer = Process()
        producer.executableURL = URL(fileURLWithPath: Lodestone.binary)
        producer.arguments = ["produce", "--topic", "crash/flips", "--producer", "kill-loop", "--server", server.address]
        producer.standardInput = input
        producer.standardOutput = FileHandle(forWritingAtPath: directory + "/acks")
        producer.standardError = FileHandle(forWritingAtPath: directory + "/produce.err")
        try producer.run()
        defer { if producer.isRunning { kill(producer.processIdentifier, SIGKILL) } }

        // The writer: events in chunks, on a thread of its own (a full pipe blocks it while
        // the server is down), until told to stop.
        let writing = Flag()
        let written = Counter()
        let writer = Thread {
            var index = 0
            while writing.isSet {
                var chunk = ""
                for _ in 0..<10 {
                    chunk += #"{"resource":"res/\#(index % 8)","from":"a","to":"b","epoch":1,"seq":\#(index / 8 + 1),"time":\#(index)}"# + "\n"
                    index += 1
                }
                input.fileHandleForWriting.write(Data(chunk.utf8))
                written.value = index
                usleep(5000)
            }
            try? input.fileHandleForWriting.close()
            writing.finish()
        }
        writer.start()

        for _ in 0..<kills {
            usleep(UInt32(100_000 + random.next() % 300_000))
            server.kill9()
            try server.start()
        }
        usleep(300_000)
        writing.clear()
        XCTAssertTrue(writing.waitUntilFinished(seconds: 60), "the writer did not finish")
        let deadline = Date().addingTimeInterval(180)
        while producer.isRunning && Date() < deadline { usleep(10_000) }
        XCTAssertFalse(producer.isRunning, "produce did not finish within 180 s after its input ended")
        let produceErrors = String(decoding: FileManager.default.contents(atPath: directory + "/produce.err") ?? Data(), as: UTF8.self)
        XCTAssertEqual(producer.terminationStatus, 0, "every line should be committed or duplicate: \(produceErrors)")

        let acks = try jsonObjects(in: String(decoding: FileManager.default.contents(atPath: directory + "/acks") ?? Data(), as: UTF8.self))
        XCTAssertEqual(acks.count, written.value, "one acknowledgement per input line")
        XCTAssertEqual(acks.map { $0["line"] as? Int ?? 0 }, Array((0..<acks.count).map { $0 + 1 }), "lines in input order, counted from 1")

        let consume = try Lodestone.run(["consume", "--topic", "crash/flips", "--server", server.address])
        XCTAssertEqual(consume.status, 0, consume.error)
        var stored: [String: (partition: Int, offset: Int)] = [:]
        var duplicates: [String] = []
        for record in try consume.objects() {
            let event = "\(record["resource"] as? String ?? "?") \(record["seq"] as? Int ?? -1)"
            if stored[event] != nil { duplicates.append(event) }
            stored[event] = (record["partition"] as? Int ?? -1, record["offset"] as? Int ?? -1)
        }
        XCTAssertEqual(duplicates, [], "events stored twice")
        var lost: [Int] = []
        var misplaced: [Int] = []
        var acknowledged = 0
        for ack in acks {
            let line = ack["line"] as? Int ?? 0
            guard ["committed", "duplicate"].contains(ack["outcome"] as? String ?? "") else { continue }
            acknowledged += 1
            let index = line - 1
            guard let place = stored["res/\(index % 8) \(index / 8 + 1)"] else {
                lost.append(line)
                continue
            }
            if place.partition != ack["partition"] as? Int || place.offset != ack["offset"] as? Int { misplaced.append(line) }
        }
        XCTAssertEqual(lost, [], "acknowledged lines missing after the kills")
        XCTAssertEqual(misplaced, [], "acknowledged lines stored elsewhere than their acknowledgement said")
        XCTAssertEqual(stored.count, acknowledged, "events stored that no line acknowledged")
        XCTAssertGreaterThan(acknowledged, 0)

        XCTAssertEqual(server.terminate(), 0)
        let check = try Lodestone.run(["check", "--data", server.data])
        XCTAssertEqual(check.status, 0, check.output)
        let retriedAsDuplicates = acks.filter { $0["outcome"] as? String == "duplicate" }.count
        print("kill loop: \(kills) kills, \(acks.count) lines, \(acknowledged) acknowledged (\(retriedAsDuplicates) as duplicate), \(stored.count) stored, seed \(seed)")
    }
}

/// A flag one thread clears and another waits on.
final class Flag: @unchecked Sendable {
    private let condition = NSCondition()
    private var set = true
    private var finished = false

    var isSet: Bool { condition.withLock { set } }
    func clear() { condition.withLock { set = false } }

    func finish() {
        condition.withLock {
            finished = true
            condition.broadcast()
        }
    }

    func waitUntilFinished(seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        return condition.withLock {
            while !finished { if !condition.wait(until: deadline) { return finished } }
            return true
        }
    }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var stored = 0
    var value: Int {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}
