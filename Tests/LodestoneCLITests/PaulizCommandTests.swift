import Foundation
import XCTest

/// `lodestone pauliz --data` as a process, on the worked example of Docs/pauliz.md
/// (Docs/examples/roles.jsonl): the rows the page shows are the rows printed.
final class PaulizCommandTests: XCTestCase {
    static let examples = ServeProduceConsumeTests.repository.appendingPathComponent("Docs/examples")

    /// Starts a server, creates the example's topic, produces its events; returns the server.
    func exampleServer() throws -> ServerProcess {
        let server = try ServerProcess(data: try Lodestone.temporaryDirectory(self) + "/data")
        addTeardownBlock { server.terminate() }
        let create = try Lodestone.run([
            "topic", "create", "roles", "--partitions", "2", "--kind", "flip", "--polarity-map", Self.examples.appendingPathComponent("roles-polarity.json").path,
            "--storm-interval", "60s", "--storm-enter", "4", "--storm-exit", "1", "--server", server.address,
        ])
        XCTAssertEqual(create.status, 0, create.error)
        let events = try String(contentsOf: Self.examples.appendingPathComponent("roles.jsonl"), encoding: .utf8)
        let produce = try Lodestone.run(["produce", "--topic", "roles", "--server", server.address], input: events)
        XCTAssertEqual(produce.status, 0, produce.output + produce.error)
        return server
    }

    func testTheWorkedExampleOfTheDocs() throws {
        let server = try exampleServer()
        // A running server holds the directory: refused, status 1, saying why.
        let refused = try Lodestone.run(["pauliz", "--data", server.data, "--topic", "roles", "--window", "1m"])
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.error.contains("in use by another process"), refused.error)
        XCTAssertEqual(server.terminate(), 0)

        let rows = try Lodestone.run(["pauliz", "--data", server.data, "--topic", "roles", "--window", "1m"])
        XCTAssertEqual(rows.status, 0, rows.error)
        let objects = try rows.objects()
        XCTAssertEqual(objects.count, 4)
        func figures(_ object: [String: Any]) -> [String] {
            ["resource", "window_start", "events", "flips", "up", "down", "flip_rate_per_min", "readouts", "cause_coverage", "chain_breaks",
             "seq_gaps", "epoch_changes", "clock_regressions", "known_ms", "z_mean", "storm_ms"].map { "\(object[$0] ?? "absent")" }
        }
        let t0 = 1_767_225_600_000
        XCTAssertEqual(objects.map(figures), [
            ["prod/eu-1/db/role", "\(t0)", "5", "4", "2", "2", "4.0", "1", "0.75", "0", "0", "0", "0", "60000", "\(40.0 / 60.0)", "35000"],
            ["prod/us-1/db/role", "\(t0)", "2", "0", "0", "0", "0.0", "2", "<null>", "0", "1", "0", "1", "30000", "-1.0", "0"],
            ["prod/eu-1/db/role", "\(t0 + 60_000)", "1", "1", "1", "0", "1.0", "0", "0.0", "1", "0", "1", "0", "60000", "1.0", "20000"],
            ["prod/us-1/db/role", "\(t0 + 180_000)", "1", "1", "1", "0", "1.0", "0", "1.0", "0", "0", "0", "0", "0", "<null>", "0"],
        ])
        // Keys in the spec's order, and the JSON spelling of numbers.
        XCTAssertEqual(rows.lines[0], #"{"resource":"prod/eu-1/db/role","window_start":1767225600000,"window_end":1767225660000,"events":5,"flips":4,"up":2,"down":2,"net_polarity":0,"flip_rate_per_min":4.0,"readouts":1,"cause_coverage":0.75,"chain_breaks":0,"seq_gaps":0,"epoch_changes":0,"clock_regressions":0,"known_ms":60000,"z_mean":0.6666666666666666,"storm_ms":35000}"#)

        let storms = try Lodestone.run(["pauliz", "--data", server.data, "--topic", "roles", "--window", "1m", "--storms"])
        XCTAssertEqual(storms.output, #"{"resource":"prod/eu-1/db/role","start":1767225625000,"end":1767225680000,"flips":4,"peak":4}"# + "\n")
        // Other storm parameters than the topic's: with E = 5 there is no storm.
        let none = try Lodestone.run(["pauliz", "--data", server.data, "--topic", "roles", "--window", "1m", "--storms", "--storm-enter", "5"])
        XCTAssertEqual(none.status, 0, none.error)
        XCTAssertEqual(none.output, "")

        let groups = try Lodestone.run(["pauliz", "--data", server.data, "--topic", "roles", "--window", "1m", "--group-depth", "1", "--format", "csv"])
        XCTAssertEqual(groups.lines.first, "group,window_start,window_end,events,flips,up,down,net_polarity,flip_rate_per_min,readouts,cause_coverage,chain_breaks,seq_gaps,epoch_changes,clock_regressions,known_ms,z_mean,storm_ms")
        XCTAssertEqual(groups.lines.dropFirst().first, "prod,1767225600000,1767225660000,7,4,2,2,0,4.0,3,0.75,0,1,0,1,90000,\(10_000.0 / 90_000.0),35000")

        let selected = try Lodestone.run(["pauliz", "--data", server.data, "--topic", "roles", "--window", "1m", "--prefix", "prod/us-1", "--from", "2026-01-01T00:01:00Z"])
        XCTAssertEqual(try selected.objects().map { "\($0["resource"]!) \($0["window_start"]!)" }, ["prod/us-1/db/role \(t0 + 180_000)"])

        let table = try Lodestone.run(["pauliz", "--data", server.data, "--topic", "roles", "--window", "1m", "--format", "table"])
        XCTAssertTrue(table.lines.first?.hasPrefix("resource ") == true, table.output)
        XCTAssertTrue(table.lines.dropFirst().first?.contains("0.6667") == true, table.output)
    }

    /// Progress and the closing summary go to stderr only when it is a terminal: nothing
    /// there in a pipe; under a pseudo-terminal (`script`), the summary line.
    func testProgressOnlyOnATerminal() throws {
        let server = try exampleServer()
        XCTAssertEqual(server.terminate(), 0)
        let arguments = ["pauliz", "--data", server.data, "--topic", "roles", "--window", "1m"]
        let piped = try Lodestone.run(arguments)
        XCTAssertEqual(piped.status, 0)
        XCTAssertEqual(piped.error, "")
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/script") else { throw XCTSkip("no script(1) to make a terminal") }
        let command = ([Lodestone.binary] + arguments + [">/dev/null"]).joined(separator: " ")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/script")
        process.arguments = ["-qec", command, "/dev/null"]
        let output = Pipe()
        process.standardOutput = output
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, text)
        XCTAssertTrue(text.contains("pauliz: 9 events (9 selected) in 2 partitions"), text)
    }

    func testUsageErrorsExitTwoAndFailuresOne() throws {
        let server = try exampleServer()
        XCTAssertEqual(server.terminate(), 0)
        let base = ["pauliz", "--data", server.data, "--topic", "roles"]
        for (arguments, message) in [
            (["--window", "7s", "--hop", "2s"], "the hop must divide the window"),
            (["--window", "1m", "--resource", "a", "--prefix", "b"], "not both"),
            (["--window", "1m", "--format", "xml"], "--format"),
            (["--window", "soon"], "--window must be a duration"),
            (["--window", "1m", "--storm-enter", "2", "--storm-exit", "2"], "below the enter threshold"),
        ] {
            let run = try Lodestone.run(base + arguments)
            XCTAssertEqual(run.status, 2, "\(arguments): \(run.error)")
            XCTAssertTrue(run.error.contains(message), "\(arguments): \(run.error)")
        }
        let missing = try Lodestone.run(["pauliz", "--data", server.data, "--topic", "nope", "--window", "1m"])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.error.contains("topic nope does not exist"), missing.error)
        let unreachable = try Lodestone.run(["pauliz", "--topic", "roles", "--window", "1m", "--server", "127.0.0.1:1"])
        XCTAssertEqual(unreachable.status, 1)
        XCTAssertTrue(unreachable.error.contains("cannot talk to the server"), unreachable.error)
        // Usage problems are found before any connection.
        let usage = try Lodestone.run(["pauliz", "--topic", "roles", "--window", "7s", "--hop", "2s", "--server", "127.0.0.1:1"])
        XCTAssertEqual(usage.status, 2, usage.error)
    }
}

/// Offline replay after a crash: the server killed with SIGKILL (its partitions left
/// "unclean"), then a torn last group write simulated at the end of a segment. The replay
/// reads every acknowledged event, leaves the torn bytes unread, and changes nothing.
final class PaulizAfterACrashTests: XCTestCase {
    func testTornTailIsLeftUnreadAndNothingChanges() throws {
        let server = try ServerProcess(data: try Lodestone.temporaryDirectory(self) + "/data")
        addTeardownBlock { server.terminate() }
        XCTAssertEqual(try Lodestone.run(["topic", "create", "roles", "--partitions", "1", "--kind", "flip", "--server", server.address]).status, 0)
        let events = (1...200).map { #"{"resource":"r/\#($0 % 7)","to":"\#($0 % 3 == 0 ? "on" : "off")","epoch":1,"seq":\#($0),"time":\#(1_000 * $0)}"# }
        let produce = try Lodestone.run(["produce", "--topic", "roles", "--server", server.address], input: events.joined(separator: "\n") + "\n")
        XCTAssertEqual(produce.status, 0, produce.error)
        server.kill9()

        // A torn last group write: bytes of a batch that never completed, after the last
        // valid batch (less than one group write).
        let segment = server.data + "/topics/roles/0/00000000000000000000.log"
        let checkBefore = try Lodestone.run(["check", "--data", server.data])
        let handle = try XCTUnwrap(FileHandle(forUpdatingAtPath: segment))
        let validEnd = try validBytes(checkBefore, segment: segment, handle: handle)
        try handle.seek(toOffset: validEnd)
        try handle.write(contentsOf: Data([0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 1, 0] + [UInt8](repeating: 0xAB, count: 300)))
        try handle.close()
        let sizeBefore = try FileManager.default.attributesOfItem(atPath: segment)[.size] as? Int

        let rows = try Lodestone.run(["pauliz", "--data", server.data, "--topic", "roles", "--window", "1m"])
        XCTAssertEqual(rows.status, 0, rows.error)
        let counted = try rows.objects().reduce(0) { $0 + ($1["events"] as? Int ?? 0) }
        XCTAssertEqual(counted, 200, "every acknowledged event, none of the torn bytes")
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: segment)[.size] as? Int, sizeBefore, "the replay changes nothing")
        let check = try Lodestone.run(["check", "--data", server.data])
        XCTAssertEqual(check.status, 0, check.output)
        XCTAssertTrue(check.output.contains("torn tail"), check.output)
    }

    /// Where the valid data of the only segment ends: the file's size, less pre-written
    /// zeros `check` reports.
    func validBytes(_ check: ProcessRun, segment: String, handle: FileHandle) throws -> UInt64 {
        let size = try handle.seekToEnd()
        for line in check.output.split(separator: "\n") where line.contains("pre-written zeros") {
            if let range = line.range(of: "byte "), let position = UInt64(line[range.upperBound...].prefix { $0.isNumber }) { return position }
        }
        return size
    }
}

/// Spec section 9: the server's answer (`--server`) equals a replay of the same durable log
/// (`--data`), row for row and episode for episode.
final class PaulizLiveEqualsReplayTests: XCTestCase {
    func testServerAnswersEqualOfflineReplays() throws {
        let directory = try Lodestone.temporaryDirectory(self)
        let traffic = directory + "/traffic.jsonl"
        let generate = try Lodestone.run(["--resources", "40", "--days", "1", "--events", "4000", "--seed", "3", "--out", traffic], executable: "lodestone-traffic")
        XCTAssertEqual(generate.status, 0, generate.error)
        try writeFile(directory + "/map.json", Data(#"{"primary":1,"replica":-1,"on":1,"off":-1,"scaled-up":1,"scaled-down":-1,"active":1,"rotating":0}"#.utf8))
        let server = try ServerProcess(data: directory + "/data")
        addTeardownBlock { server.terminate() }
        XCTAssertEqual(try Lodestone.run(["topic", "create", "flips", "--partitions", "3", "--kind", "flip", "--polarity-map", directory + "/map.json", "--server", server.address]).status, 0)
        let input = try String(contentsOfFile: traffic, encoding: .utf8)
        let produce = try Lodestone.run(["produce", "--topic", "flips", "--server", server.address], input: input)
        // Every line answered; the traffic's replayed sends are refused (`replayed`), so the
        // status is 1 when there are any.
        XCTAssertEqual(produce.lines.count, input.split(separator: "\n").count, produce.error)
        XCTAssertEqual(try produce.objects().filter { $0["outcome"] as? String == "committed" }.count, 4000)

        let queries: [[String]] = [
            ["--window", "1m"],
            ["--window", "10m", "--hop", "2m", "--format", "csv"],
            ["--window", "1h", "--group-depth", "2"],
            ["--window", "1m", "--prefix", "prod/eu-1", "--from", "1767232800000"],
            ["--window", "1m", "--storms"],
            ["--window", "1m", "--storms", "--storm-interval", "30s", "--storm-enter", "3", "--storm-exit", "1"],
        ]
        var live: [ProcessRun] = []
        for query in queries {
            let run = try Lodestone.run(["pauliz", "--topic", "flips", "--server", server.address] + query)
            XCTAssertEqual(run.status, 0, "\(query): \(run.error)")
            live.append(run)
        }
        // The one-minute queries with the topic's storms came from the live state, the
        // others from replays.
        let health = try XCTUnwrap(try Lodestone.run(["health", "--server", server.address]).objects().first?["counters"] as? [String: Any])
        XCTAssertEqual(health["pauliz_live_answers"] as? Int, 3)
        XCTAssertEqual(health["pauliz_replay_answers"] as? Int, 3)
        // After a restart the live state is rebuilt from the log while the server already
        // answers (by replay until it is ready): the same answers either way.
        XCTAssertEqual(server.terminate(), 0)
        try server.start()
        let early = try Lodestone.run(["pauliz", "--topic", "flips", "--server", server.address] + queries[0])
        XCTAssertEqual(early.output, live[0].output)
        var ready = false
        for _ in 0..<200 {
            let counters = try XCTUnwrap(try Lodestone.run(["health", "--server", server.address]).objects().first?["counters"] as? [String: Any])
            if counters["pauliz_live_topics"] as? Int == 1 && counters["pauliz_live_building"] as? Int == 0 {
                ready = true
                break
            }
            usleep(50_000)
        }
        XCTAssertTrue(ready, "the live state is built within 10 s")
        let again = try Lodestone.run(["pauliz", "--topic", "flips", "--server", server.address] + queries[0])
        XCTAssertEqual(again.output, live[0].output)
        let rebuilt = try XCTUnwrap(try Lodestone.run(["health", "--server", server.address]).objects().first?["counters"] as? [String: Any])
        XCTAssertEqual((rebuilt["pauliz_live_answers"] as? Int ?? 0) + (rebuilt["pauliz_replay_answers"] as? Int ?? 0), 2)
        XCTAssertGreaterThanOrEqual(rebuilt["pauliz_live_answers"] as? Int ?? 0, 1, "the answer after the build came from the live state")
        XCTAssertEqual(server.terminate(), 0)
        for (query, answer) in zip(queries, live) {
            let replay = try Lodestone.run(["pauliz", "--topic", "flips", "--data", server.data] + query)
            XCTAssertEqual(replay.status, 0, "\(query): \(replay.error)")
            XCTAssertGreaterThan(replay.lines.count, 1, "\(query) should have an answer worth comparing")
            XCTAssertEqual(answer.output, replay.output, "\(query)")
        }
    }
}

/// An answer larger than one frame (8 MiB, about 60,000 rows) comes from the server in parts
/// and is printed whole: the same as a replay of the data directory.
final class PaulizLargeAnswerTests: XCTestCase {
    func testAnswersLargerThanAFrameArriveWhole() throws {
        let directory = try Lodestone.temporaryDirectory(self)
        var input = ""
        for minute in 0..<100 {
            for resource in 0..<700 {
                input += "{\"resource\":\"region-\(resource % 7)/service-\(resource % 50)/instance-\(resource)\",\"to\":\"\(minute % 2 == 0 ? "off" : "on")\",\"epoch\":1,\"seq\":\(minute + 1),\"time\":\(1_767_225_600_000 + Int64(minute) * 60_000 + Int64(resource))}\n"
            }
        }
        try writeFile(directory + "/map.json", Data(#"{"on":1,"off":-1}"#.utf8))
        let server = try ServerProcess(data: directory + "/data")
        addTeardownBlock { server.terminate() }
        XCTAssertEqual(try Lodestone.run(["topic", "create", "flips", "--partitions", "2", "--kind", "flip", "--polarity-map", directory + "/map.json", "--server", server.address]).status, 0)
        let produce = try Lodestone.run(["produce", "--topic", "flips", "--server", server.address], input: input)
        XCTAssertEqual(produce.status, 0, produce.error)
        // One-minute windows with the topic's storms: the live state; other storm
        // parameters: a replay on the server. 70,000 rows each.
        let queries: [[String]] = [["--window", "1m"], ["--window", "1m", "--storm-enter", "9", "--storm-exit", "2"]]
        var answers: [ProcessRun] = []
        for query in queries {
            let run = try Lodestone.run(["pauliz", "--topic", "flips", "--server", server.address] + query)
            XCTAssertEqual(run.status, 0, "\(query): \(run.error)")
            XCTAssertEqual(run.lines.count, 70_000, "\(query)")
            answers.append(run)
        }
        XCTAssertEqual(server.terminate(), 0)
        for (query, answer) in zip(queries, answers) {
            let replay = try Lodestone.run(["pauliz", "--topic", "flips", "--data", server.data] + query)
            XCTAssertEqual(replay.status, 0, replay.error)
            XCTAssertEqual(answer.output, replay.output, "\(query)")
        }
    }
}
