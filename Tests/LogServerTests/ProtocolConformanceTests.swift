@testable import LogServer
import Foundation
import LogClient
import LogFormat
import LogStorage
import NIOCore
import PauliZ
import WireProtocol
import XCTest

/// Docs/protocol.md, point by point, on a real server over loopback: what a client written
/// from the document alone relies on.
final class ProtocolConformanceTests: XCTestCase {
    static let protocolDocument: String = {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return (try? String(contentsOf: root.appendingPathComponent("Docs/protocol.md"), encoding: .utf8)) ?? ""
    }()

    func greeted(_ server: TestServer) async throws -> RawClient {
        let client = try await RawClient.connect(port: server.port)
        _ = try await client.exchange(Request.hello(HelloRequest(clientName: "conformance", token: "")).frame(requestId: 1))
        return client
    }

    func testEveryHealthCounterAndStatusIsDocumented() async throws {
        XCTAssertFalse(Self.protocolDocument.isEmpty)
        let server = try await TestServer()
        let names = server.server.health.counters.map(\.name)
        XCTAssertGreaterThan(names.count, 20)
        for name in names {
            XCTAssertTrue(Self.protocolDocument.contains("`\(name)`"), "Docs/protocol.md does not document health counter \(name)")
        }
        for status in [RequestRouter.status(stopping: false, readOnlyPartitions: 0), RequestRouter.status(stopping: true, readOnlyPartitions: 0),
                       RequestRouter.status(stopping: false, readOnlyPartitions: 3).replacingOccurrences(of: "3", with: "N")] {
            XCTAssertTrue(Self.protocolDocument.contains("`\(status)`"), "Docs/protocol.md does not list health status \(status)")
        }
        await server.stop()
    }

    func testHealthSaysShuttingDownOnceShutdownBegins() async throws {
        let server = try await TestServer()
        XCTAssertEqual(server.server.health.status, "ok")
        await server.server.shutdown()
        XCTAssertEqual(server.server.health.status, "shutting_down")
        server.pool.shutdown()
        try? FileManager.default.removeItem(atPath: server.directory)
    }

    func testAnAppendWithTooManyBatchesIsInvalidArgumentAndTheConnectionStays() async throws {
        let server = try await TestServer()
        let client = try await greeted(server)
        var payload = ByteBuffer()
        payload.writeInteger(UInt16(1))
        payload.writeString("t")
        payload.writeInteger(UInt32(0))
        payload.writeInteger(UInt8(0))
        payload.writeInteger(UInt32(WireLimits.appendBatchCountMax + 1))
        for _ in 0...WireLimits.appendBatchCountMax { payload.writeInteger(UInt32(0)) }
        let reply = try await client.exchange(Frame(requestId: 7, kind: MessageKind.append.rawValue, payload: payload))
        XCTAssertEqual(reply.requestId, 7)
        XCTAssertEqual(try reply.error(for: .append)?.code, .invalidArgument)
        let health = try await client.exchange(Request.health.frame(requestId: 8))
        XCTAssertEqual(health.requestId, 8, "the connection still serves")
        XCTAssertNil(try health.error(for: .health))
        XCTAssertEqual(server.server.health.counters.first { $0.name == "malformed_frames" }?.value, 0, "not a malformed frame")
        await server.stop()
    }

    func testAnUnknownKindIsAnsweredWithItsKindAndId() async throws {
        let server = try await TestServer()
        let client = try await greeted(server)
        let reply = try await client.exchange(Frame(requestId: 21, kind: 99, payload: ByteBuffer()))
        XCTAssertEqual(reply.requestId, 21)
        XCTAssertEqual(reply.kind, 99 | Frame.responseFlag)
        var payload = reply.payload
        XCTAssertEqual(payload.readInteger(as: UInt16.self), ErrorCode.unknownRequest.rawValue)
        let closed = try await client.closedByServer()
        XCTAssertTrue(closed)
        await server.stop()
    }

    func testAnAppendWithNoBatchesHasNoResults() async throws {
        let server = try await TestServer()
        let connection = try await server.connect()
        _ = try await connection.send(.createTopic(TopicInfo(name: "empty", partitionCount: 1, kind: .raw)))
        guard case .append(let results) = try await connection.send(.append(AppendRequest(topic: "empty", partition: 0, ack: .durable, batches: []))) else {
            return XCTFail("append")
        }
        XCTAssertEqual(results, [])
        guard case .topic(let topic) = try await connection.send(.describeTopic("empty")) else { return XCTFail("describe") }
        XCTAssertEqual(topic.partitions.map(\.end), [0], "nothing stored")
        await connection.close()
        await server.stop()
    }

    /// An append with ack none is never answered, not even its errors; the next answer on
    /// the connection is the next request's.
    func testAckNoneIsNeverAnsweredEvenWhenItFails() async throws {
        let server = try await TestServer()
        let client = try await greeted(server)
        var frames = ByteBuffer()
        let missing = Request.append(AppendRequest(topic: "no-such-topic", partition: 0, ack: .none, batches: [rawBatch(["lost"])]))
        try FrameEncoder().encode(data: missing.frame(requestId: 2), out: &frames)
        try FrameEncoder().encode(data: Request.health.frame(requestId: 3), out: &frames)
        let reply = try await client.exchangeRaw(frames)
        XCTAssertEqual(reply.requestId, 3, "the ack-none append got no answer, its not_found included")
        await server.stop()
    }

    func testAnErrorResultCarriesNoOutcome() {
        let result = RequestRouter.batchResult(.failure(StorageError(.overloaded, "queue full")))
        XCTAssertEqual(result.error, .overloaded)
        XCTAssertEqual(result.outcome, .noOutcome)
        XCTAssertEqual([result.baseOffset, result.lastOffset, result.appendTime], [-1, -1, -1])
    }

    /// Pauli-Z errors keep their kind on the wire: a temporary-file failure of a replay is
    /// io_error, not limit_reached.
    func testPauliZErrorsAnswerTheirOwnCode() {
        XCTAssertEqual(RequestRouter.protocolError(PauliZError(.invalidArgument, "hop")).code, .invalidArgument)
        XCTAssertEqual(RequestRouter.protocolError(PauliZError(.limitReached, "events")).code, .limitReached)
        let io = RequestRouter.protocolError(PauliZError(.io, "cannot create a temporary file in /nowhere"))
        XCTAssertEqual(io.code, .ioError)
        XCTAssertEqual(io.message, "cannot create a temporary file in /nowhere")
    }

    /// One set of storm limits for topics and queries (Docs/limits.md).
    func testTopicsAndQueriesShareTheStormLimits() async throws {
        let server = try await TestServer()
        let connection = try await server.connect()
        _ = try await connection.send(.createTopic(TopicInfo(
            name: "edge", partitionCount: 1, kind: .flip, stormIntervalMilliseconds: Limits.stormIntervalMillisecondsMax, stormEnter: UInt32(Limits.stormThresholdMax), stormExit: 0)))
        var messages: [String] = []
        for (interval, enter) in [(Limits.stormIntervalMillisecondsMax + 1, 5), (60_000, Limits.stormThresholdMax + 1)] {
            do {
                _ = try await connection.send(.createTopic(TopicInfo(name: "over", partitionCount: 1, kind: .flip, stormIntervalMilliseconds: interval, stormEnter: UInt32(enter), stormExit: 0)))
                XCTFail("a topic past the storm limits was created")
            } catch {
                guard case .server(let protocolError) = error else { return XCTFail("\(error)") }
                XCTAssertEqual(protocolError.code, .invalidArgument)
                messages.append(protocolError.message)
            }
            do {
                _ = try await connection.send(.pauliz(PaulizRequest(topic: "edge", windowMilliseconds: 60_000, hopMilliseconds: 60_000, stormIntervalMilliseconds: interval, stormEnter: Int32(enter), stormExit: 0)))
                XCTFail("a query past the storm limits was answered")
            } catch {
                guard case .server(let protocolError) = error else { return XCTFail("\(error)") }
                XCTAssertEqual(protocolError.code, .invalidArgument)
                messages.append(protocolError.message)
            }
        }
        XCTAssertEqual(messages[0], messages[1], "the same rule, the same words")
        XCTAssertEqual(messages[2], messages[3])
        guard case .pauliz = try await connection.send(.pauliz(PaulizRequest(
            topic: "edge", windowMilliseconds: 60_000, hopMilliseconds: 60_000, stormIntervalMilliseconds: Limits.stormIntervalMillisecondsMax,
            stormEnter: Int32(Limits.stormThresholdMax), stormExit: 0))) else { return XCTFail("a query at the limits") }
        await connection.close()
        await server.stop()
    }

    /// Fifty appends written in one go are answered in the order they were sent, each at
    /// the next offset (no sleeps: one write carries them all).
    func testPipelinedAppendsInOneWriteAreAnsweredInOrder() async throws {
        let server = try await TestServer()
        let setup = try await server.connect()
        _ = try await setup.send(.createTopic(TopicInfo(name: "p", partitionCount: 1, kind: .raw)))
        await setup.close()
        let client = try await greeted(server)
        var frames = ByteBuffer()
        for index in 0..<50 {
            let append = Request.append(AppendRequest(topic: "p", partition: 0, ack: .durable, batches: [rawBatch(["v\(index)"])]))
            try FrameEncoder().encode(data: append.frame(requestId: UInt32(100 + index)), out: &frames)
        }
        var replies = [try await client.exchangeRaw(frames)]
        for _ in 0..<1000 where replies.count < 50 {
            if let frame = client.inbox.takeFrame() { replies.append(frame) } else { try await Task.sleep(for: .milliseconds(5)) }
        }
        XCTAssertEqual(replies.map(\.requestId), (0..<50).map { UInt32(100 + $0) })
        let offsets = try replies.map { reply -> Int64 in
            guard case .success(.append(let results)) = try ResponsePayload.decode(kind: .append, payload: reply.payload) else { return -1 }
            return results[0].baseOffset
        }
        XCTAssertEqual(offsets, (0..<50).map(Int64.init))
        await server.stop()
    }
}
