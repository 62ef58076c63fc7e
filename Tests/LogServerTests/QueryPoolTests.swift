@testable import LogServer
import Foundation
import LogClient
import LogIO
import WireProtocol
import XCTest

/// Reads and analytics run on the server's bounded query pool, never on a writer's
/// thread: with every query thread taken and its queue full, reads are refused as
/// `overloaded` and durable appends still commit.
final class QueryPoolTests: XCTestCase {
    func testAFullQueryPoolRefusesReadsAndLeavesAppendsAlone() async throws {
        let server = try await TestServer { configuration in
            configuration.queryThreads = 1
            configuration.queryQueuedMax = 0
        }
        let connection = try await server.connect()
        _ = try await connection.send(.createTopic(TopicInfo(name: "events", partitionCount: 1, kind: .raw)))
        // A query that holds the only query thread.
        let gate = Gate()
        gate.close()
        XCTAssertTrue(server.server.queries.submit { gate.pass() })
        let deadline = Date().addingTimeInterval(10)
        while gate.waiting == 0 && Date() < deadline { usleep(1_000) }
        XCTAssertEqual(gate.waiting, 1)

        for index in 0..<20 {
            guard case .append(let results) = try await connection.send(.append(AppendRequest(topic: "events", partition: 0, ack: .durable, batches: [rawBatch(["v\(index)"])]))) else {
                return XCTFail("append")
            }
            XCTAssertEqual(results.map(\.outcome), [.committed])
        }
        let fetch = await Self.errorCode { try await connection.send(.fetch(FetchRequest(topic: "events", partition: 0, offset: 0, maxBytes: 1 << 20, maxWaitMilliseconds: 0))) }
        XCTAssertEqual(fetch, .overloaded, "a fetch with no query thread free and no room to wait")
        let byTime = await Self.errorCode { try await connection.send(.listOffsets(ListOffsetsRequest(topic: "events", partition: 0, mode: .time, time: 0))) }
        XCTAssertEqual(byTime, .overloaded, "an offset by time reads the log: refused too")
        // Earliest and latest read no file: answered.
        guard case .listOffsets(let latest) = try await connection.send(.listOffsets(ListOffsetsRequest(topic: "events", partition: 0, mode: .latest))) else { return XCTFail("offsets") }
        XCTAssertEqual(latest.offset, 20)
        guard case .health(let health) = try await connection.send(.health) else { return XCTFail("health") }
        XCTAssertEqual(health.counters.first { $0.name == "queries_refused" }?.value, 2)
        XCTAssertEqual(health.counters.first { $0.name == "queries_running" }?.value, 1)

        gate.open()
        while server.server.queries.load.running > 0 && Date() < deadline.addingTimeInterval(10) { usleep(1_000) }
        guard case .fetch(let fetched) = try await connection.send(.fetch(FetchRequest(topic: "events", partition: 0, offset: 0, maxBytes: 1 << 20, maxWaitMilliseconds: 0))) else { return XCTFail("fetch") }
        XCTAssertEqual(try values(in: fetched.records).count, 20)
        await connection.close()
        await server.stop()
    }

    /// The code of the server's error answer to `request`, nil when it succeeded.
    private static func errorCode(_ request: () async throws -> Reply) async -> ErrorCode? {
        do {
            _ = try await request()
            return nil
        } catch {
            guard case .server(let refusal)? = error as? ClientError else { return nil }
            return refusal.code
        }
    }
}
