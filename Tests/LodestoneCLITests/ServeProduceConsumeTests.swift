import Foundation
import XCTest

/// `lodestone serve`, `topic`, `produce`, `consume`, `offsets` and `health` as real
/// processes on a loopback port: the contract of Docs/design.md, end to end.
final class ServeProduceConsumeTests: XCTestCase {
    func startServer(arguments: [String] = []) throws -> ServerProcess {
        let server = try ServerProcess(data: try Lodestone.temporaryDirectory(self) + "/data", arguments: arguments)
        addTeardownBlock { server.terminate() }
        return server
    }

    /// The three commands of the README's "A first session", read from the README itself
    /// (`.build/release/lodestone ARGS [< FILE]`), with paths from the repository root.
    static func readmeSession() throws -> [(arguments: [String], input: String?)] {
        let readme = try String(contentsOf: repository.appendingPathComponent("README.md"), encoding: .utf8)
        guard let section = readme.components(separatedBy: "## A first session").dropFirst().first?.components(separatedBy: "\n## ").first else {
            throw CLITestError("the README has no \"A first session\" section")
        }
        return section.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { $0.hasPrefix(".build/release/lodestone ") }.map { line in
            let parts = line.components(separatedBy: " < ")
            let words = parts[0].split(separator: " ").dropFirst().map { word in
                word.hasPrefix("Docs/") ? repository.appendingPathComponent(String(word)).path : String(word)
            }
            return (words, parts.count > 1 ? repository.appendingPathComponent(parts[1]).path : nil)
        }
    }

    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func testTheReadmeSession() throws {
        let server = try startServer()
        let session = try Self.readmeSession()
        XCTAssertEqual(session.map { $0.arguments.prefix(2).joined(separator: " ") }, ["topic create", "produce --topic", "consume --topic"])
        guard session.count == 3 else { return }
        let create = try Lodestone.run(session[0].arguments + ["--server", server.address])
        XCTAssertEqual(create.status, 0, create.error)
        let events = try String(contentsOfFile: session[1].input ?? "", encoding: .utf8)
        let produce = try Lodestone.run(session[1].arguments + ["--server", server.address], input: events)
        XCTAssertEqual(produce.status, 0, produce.output + produce.error)
        let acks = try produce.objects()
        XCTAssertEqual(acks.map { $0["line"] as? Int }, [1, 2, 3, 4])
        XCTAssertEqual(acks.map { $0["outcome"] as? String }, Array(repeating: "committed", count: 4))

        let consume = try Lodestone.run(session[2].arguments + ["--server", server.address])
        XCTAssertEqual(consume.status, 0, consume.error)
        let records = try consume.objects()
        XCTAssertEqual(records.count, 4)
        // Every field of the spec, in spec order, then where the record is.
        XCTAssertTrue(consume.lines.allSatisfy {
            $0.hasPrefix(#"{"resource":"#) && $0.contains(#","from":"#) && $0.contains(#","polarity":"#) && $0.contains(#","actor":"#)
                && $0.contains(#","reason":"#) && $0.contains(#","topic":"demo/flips","partition":"#) && $0.contains(#","append_time":"#)
        }, consume.output)
        // Per resource, offset order is input order; polarity resolved through the topic's map
        // when the event has none (degraded -1, healthy 1), the event's own otherwise.
        let database = records.filter { $0["resource"] as? String == "db/primary" }
        XCTAssertEqual(database.map { $0["seq"] as? Int }, [1, 2])
        XCTAssertEqual(database.map { $0["polarity"] as? Int }, [-1, 1])
        XCTAssertEqual(database.first?["reason"] as? String, "p99 over 2s")
        XCTAssertEqual(records.first { $0["seq"] as? Int == 2 }?["reason"] as? String, "", "absent strings print as \"\"")
        let web = records.filter { $0["resource"] as? String == "web/frontend-1" }
        XCTAssertEqual(web.map { $0["polarity"] as? Int }, [-1, 1])
        // Each record is where its acknowledgement said.
        let lineOf = ["db/primary 1": 0, "db/primary 2": 1, "web/frontend-1 41": 2, "web/frontend-1 42": 3]
        for record in records {
            guard let index = lineOf["\(record["resource"] as? String ?? "") \(record["seq"] as? Int ?? 0)"] else { return XCTFail("\(record)") }
            let ack = acks[index]
            XCTAssertEqual(record["partition"] as? Int, ack["partition"] as? Int)
            XCTAssertEqual(record["offset"] as? Int, ack["offset"] as? Int)
        }
    }

    func testProduceAnswersEveryLineInOrderAndExitsOneOnAnyRefusal() throws {
        let server = try startServer()
        XCTAssertEqual(try Lodestone.run(["topic", "create", "events", "--partitions", "2", "--kind", "raw", "--server", server.address]).status, 0)
        let input = [
            #"{"resource":"a","value":"one"}"#,
            "",
            #"{"resource":"b","value":"two","partition":1}"#,
            #"{"resource":"c","value":"three","colour":"red"}"#,
            #"{"resource":"d","value":"four","partition":9}"#,
            #"{"resource":"e","value_base64":"/wA=","headers":{"k":"v"},"time":1700000000000}"#,
        ].joined(separator: "\n")
        let produce = try Lodestone.run(["produce", "--topic", "events", "--server", server.address], input: input)
        XCTAssertEqual(produce.status, 1)
        let acks = try produce.objects()
        XCTAssertEqual(acks.map { $0["line"] as? Int }, [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(acks.map { $0["outcome"] as? String }, ["committed", "invalid", "committed", "invalid", "invalid", "committed"])
        XCTAssertEqual(acks[2]["partition"] as? Int, 1)
        for index in [1, 3, 4] {
            XCTAssertTrue(acks[index]["partition"] is NSNull && acks[index]["offset"] is NSNull, "\(acks[index])")
            XCTAssertNotNil(acks[index]["error"] as? String)
        }
        for index in [0, 2, 5] { XCTAssertNil(acks[index]["error"]) }
        XCTAssertTrue((acks[3]["error"] as? String ?? "").contains("colour"))

        let consume = try Lodestone.run(["consume", "--topic", "events", "--server", server.address])
        let records = try consume.objects()
        XCTAssertEqual(records.map { $0["resource"] as? String }.sorted { ($0 ?? "") < ($1 ?? "") }, ["a", "b", "e"])
        let binary = records.first { $0["resource"] as? String == "e" }
        XCTAssertEqual(binary?["value_base64"] as? String, "/wA=")
        XCTAssertEqual(binary?["headers"] as? [String: String], ["k": "v"])
        XCTAssertEqual(binary?["time"] as? Int, 1_700_000_000_000)
        // Partition by partition, in offset order.
        let positions = records.map { [$0["partition"] as? Int ?? -1, $0["offset"] as? Int ?? -1] }
        XCTAssertEqual(positions, positions.sorted { $0.lexicographicallyPrecedes($1) })

        let allGood = try Lodestone.run(["produce", "--topic", "events", "--server", server.address, "--ack", "written"], input: #"{"resource":"f","value":"x"}"# + "\n")
        XCTAssertEqual(allGood.status, 0, allGood.error)
        XCTAssertEqual(try allGood.objects().first?["outcome"] as? String, "committed")
        let fireAndForget = try Lodestone.run(["produce", "--topic", "events", "--server", server.address, "--ack", "none"], input: #"{"resource":"g","value":"x"}"#)
        XCTAssertEqual(fireAndForget.status, 0, fireAndForget.error)
        XCTAssertEqual(fireAndForget.lines, [#"{"line":1,"outcome":"sent","partition":"# + "\(try fireAndForget.objects()[0]["partition"] as? Int ?? -1)" + #","offset":null}"#])
    }

    func testConsumeStartsWhereAskedAndFiltersByResource() throws {
        let server = try startServer()
        XCTAssertEqual(try Lodestone.run(["topic", "create", "t", "--partitions", "1", "--kind", "raw", "--server", server.address]).status, 0)
        let first = (0..<5).map { #"{"resource":"r\#($0 % 2)","value":"v\#($0)"}"# }.joined(separator: "\n")
        XCTAssertEqual(try Lodestone.run(["produce", "--topic", "t", "--server", server.address], input: first).status, 0)
        Thread.sleep(forTimeInterval: 0.05)
        let middle = Int64(Date().timeIntervalSince1970 * 1000)
        Thread.sleep(forTimeInterval: 0.05)
        XCTAssertEqual(try Lodestone.run(["produce", "--topic", "t", "--server", server.address], input: #"{"resource":"r0","value":"late"}"#).status, 0)

        func values(_ arguments: [String]) throws -> [String] {
            let run = try Lodestone.run(["consume", "--topic", "t", "--server", server.address] + arguments)
            XCTAssertEqual(run.status, 0, run.error)
            return try run.objects().map { $0["value"] as? String ?? "?" }
        }
        XCTAssertEqual(try values([]), ["v0", "v1", "v2", "v3", "v4", "late"])
        XCTAssertEqual(try values(["--partition", "0", "--from-offset", "3"]), ["v3", "v4", "late"])
        XCTAssertEqual(try values(["--from-time", "\(middle)"]), ["late"])
        XCTAssertEqual(try values(["--from-time", "2999-01-01T00:00:00Z"]), [])
        XCTAssertEqual(try values(["--resource", "r1"]), ["v1", "v3"])

        let offsets = try Lodestone.run(["offsets", "--topic", "t", "--server", server.address])
        XCTAssertEqual(offsets.lines, [#"{"partition":0,"start":0,"end":6}"#])
        let byTime = try Lodestone.run(["offsets", "--topic", "t", "--time", "\(middle)", "--server", server.address])
        XCTAssertEqual(byTime.lines, [#"{"partition":0,"offset":5}"#])

        let usage = try Lodestone.run(["consume", "--topic", "t", "--from-offset", "1", "--server", server.address])
        XCTAssertEqual(usage.status, 2)
        XCTAssertTrue(usage.error.contains("--from-offset needs --partition"), usage.error)
        let missing = try Lodestone.run(["consume", "--topic", "nope", "--server", server.address])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.error.contains("not_found"), missing.error)
    }

    func testFollowPrintsRecordsAsTheyArrive() throws {
        let server = try startServer()
        XCTAssertEqual(try Lodestone.run(["topic", "create", "live", "--partitions", "2", "--kind", "raw", "--server", server.address]).status, 0)
        let directory = try Lodestone.temporaryDirectory(self)
        try writeFile(directory + "/follow.out", Data())
        let follower = Process()
        follower.executableURL = URL(fileURLWithPath: Lodestone.binary)
        follower.arguments = ["consume", "--topic", "live", "--follow", "--server", server.address]
        follower.standardOutput = FileHandle(forWritingAtPath: directory + "/follow.out")
        try follower.run()
        defer {
            kill(follower.processIdentifier, SIGTERM)
            follower.waitUntilExit()
        }
        var seen: [String] = []
        for round in 0..<3 {
            let input = #"{"resource":"k","value":"round \#(round)","partition":\#(round % 2)}"#
            XCTAssertEqual(try Lodestone.run(["produce", "--topic", "live", "--server", server.address], input: input).status, 0)
            let deadline = Date().addingTimeInterval(20)
            while Date() < deadline {
                let text = String(decoding: FileManager.default.contents(atPath: directory + "/follow.out") ?? Data(), as: UTF8.self)
                seen = text.split(separator: "\n").compactMap { line in
                    (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["value"] as? String
                }
                if seen.count > round { break }
                usleep(20_000)
            }
            XCTAssertEqual(seen, (0...round).map { "round \($0)" })
        }
        XCTAssertTrue(follower.isRunning, "--follow never ends by itself")
    }

    func testServeGuardsNonLoopbackAndAuthRefusesWrongTokens() throws {
        let directory = try Lodestone.temporaryDirectory(self)
        let open = try Lodestone.run(["serve", "--data", directory + "/data", "--listen", "0.0.0.0:0"], timeout: 30)
        XCTAssertEqual(open.status, 2)
        XCTAssertTrue(open.error.contains("--auth-file"), open.error)
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory + "/data"), "refused before touching the data directory")

        let tokens = #"{"tokens":[{"name":"ops","token":"s3cret-admin-token-0001","scopes":[{"prefix":"","rights":["admin"]}]},"# +
            #"{"name":"app","token":"app-token-000000000001","scopes":[{"prefix":"app/","rights":["produce","consume"]}]}]}"#
        try writeFile(directory + "/tokens.json", Data(tokens.utf8))
        let server = try startServer(arguments: ["--auth-file", directory + "/tokens.json"])
        let admin = ["--server", server.address, "--token", "s3cret-admin-token-0001"]
        XCTAssertEqual(try Lodestone.run(["topic", "create", "app/events", "--partitions", "1", "--kind", "raw"] + admin).status, 0)
        XCTAssertEqual(try Lodestone.run(["topic", "create", "secret/events", "--partitions", "1", "--kind", "raw"] + admin).status, 0)

        let noToken = try Lodestone.run(["topic", "list", "--server", server.address])
        XCTAssertEqual(noToken.status, 1)
        XCTAssertTrue(noToken.error.contains("unauthenticated"), noToken.error)
        let wrong = try Lodestone.run(["health", "--server", server.address, "--token", "guess"])
        XCTAssertEqual(wrong.status, 1)
        XCTAssertFalse(server.errors.contains("guess"), "a refused token must not be logged")

        let fromEnvironment = try Lodestone.run(["topic", "list", "--server", server.address], environment: ["LODESTONE_TOKEN": "app-token-000000000001"])
        XCTAssertEqual(fromEnvironment.status, 0, fromEnvironment.error)
        XCTAssertEqual(try fromEnvironment.objects().map { $0["name"] as? String }, ["app/events"])
        let outside = try Lodestone.run(["produce", "--topic", "secret/events", "--server", server.address, "--token", "app-token-000000000001"], input: #"{"resource":"r","value":"x"}"#)
        XCTAssertEqual(outside.status, 1)
        XCTAssertTrue(outside.error.contains("unauthorized"), outside.error)
        let inside = try Lodestone.run(["produce", "--topic", "app/events", "--server", server.address, "--token", "app-token-000000000001"], input: #"{"resource":"r","value":"x"}"#)
        XCTAssertEqual(inside.status, 0, inside.error)
        let health = try Lodestone.run(["health"] + admin)
        let counters = try health.objects().first?["counters"] as? [String: Int]
        XCTAssertEqual(counters?["auth_failures"], 2)
    }

    func testSigtermShutsDownCleanlyAndTheDataIsThereAfterARestart() throws {
        let server = try startServer()
        XCTAssertEqual(try Lodestone.run(["topic", "create", "keep", "--partitions", "1", "--kind", "raw", "--server", server.address]).status, 0)
        let input = (0..<100).map { #"{"resource":"r","value":"\#($0)"}"# }.joined(separator: "\n")
        XCTAssertEqual(try Lodestone.run(["produce", "--topic", "keep", "--server", server.address], input: input).status, 0)
        XCTAssertEqual(server.terminate(), 0)
        let check = try Lodestone.run(["check", "--data", server.data])
        XCTAssertEqual(check.status, 0, check.output)
        XCTAssertTrue(check.output.contains("100 records"), check.output)
        try server.start()
        let consume = try Lodestone.run(["consume", "--topic", "keep", "--server", server.address])
        XCTAssertEqual(try consume.objects().map { $0["value"] as? String }, (0..<100).map { "\($0)" })
    }
}
