import Foundation
import LogClient
import LogFormat
import LogIO
import LogServer
import LogStorage
import Logging
import NIOCore
import WireProtocol
import XCTest

final class OutcomeBox: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [Int: RecordOutcome] = [:]
    func set(_ index: Int, _ outcome: RecordOutcome) { lock.withLock { stored[index] = outcome } }
    var all: [Int: RecordOutcome] { lock.withLock { stored } }
}

/// Everything in a partition, read with the consumer.
func consumeAll(_ connection: LodestoneConnection, topic: String, partition: Int) async throws -> [ConsumedRecord] {
    let consumer = PartitionConsumer(connection: connection, topic: topic, partition: partition, from: 0)
    var records: [ConsumedRecord] = []
    while true {
        let (batch, end) = try await consumer.next(wait: false)
        records += batch
        if await consumer.nextOffset >= end { break }
    }
    await consumer.stop()
    return records
}

final class ClientTests: XCTestCase {
    func testTheProducerBatchesAndTheConsumerReadsEverythingBackInOrder() async throws {
        let server = try await TestServer()
        let admin = try await server.connect()
        _ = try await admin.send(.createTopic(TopicInfo(name: "many", partitionCount: 3, kind: .raw)))
        let producer = IdempotentProducer(host: "127.0.0.1", port: server.port, topic: "many")
        try await producer.start()
        let box = OutcomeBox()
        for index in 0..<3000 {
            await producer.send(ProducerRecord(key: Array("k\(index % 10)".utf8), value: Array("value \(index)".utf8))) { box.set(index, $0) }
        }
        await producer.flush()
        let outcomes = box.all
        XCTAssertEqual(outcomes.count, 3000)
        XCTAssertTrue(outcomes.values.allSatisfy { $0.name == "committed" }, "\(Set(outcomes.values.map(\.name)))")
        var seen: [String] = []
        for partition in 0..<3 {
            let records = try await consumeAll(admin, topic: "many", partition: partition)
            XCTAssertEqual(records.map(\.offset), (0..<Int64(records.count)).map { $0 }, "dense offsets in partition \(partition)")
            seen += records.map { String(decoding: $0.value ?? [], as: UTF8.self) }
        }
        XCTAssertEqual(Set(seen), Set((0..<3000).map { "value \($0)" }))
        XCTAssertEqual(seen.count, 3000, "each record once")
        var fsyncs: Int64 = 0
        if case .health(let health) = try await admin.send(.health) { fsyncs = health.counters.first { $0.name == "fsyncs" }?.value ?? 0 }
        XCTAssertLessThan(fsyncs, 1000, "records were batched, not sent one by one")
        await producer.close()
        await admin.close()
        await server.stop()
    }

    /// A refused flip batch: the offending record gets its reason, the others are
    /// resubmitted and land, in order.
    func testRefusedRecordsGetTheirReasonsAndTheRestLand() async throws {
        let server = try await TestServer()
        let admin = try await server.connect()
        _ = try await admin.send(.createTopic(TopicInfo(name: "flips", partitionCount: 1, kind: .flip)))
        let producer = IdempotentProducer(host: "127.0.0.1", port: server.port, topic: "flips", name: "controller")
        try await producer.start()
        func record(_ seq: Int64) -> ProducerRecord {
            let event = FlipEvent(resource: "leader", to: seq % 2 == 0 ? "a" : "b", epoch: 1, seq: seq, time: seq)
            return ProducerRecord(key: event.key, value: event.encodedValue())
        }
        let box = OutcomeBox()
        for (index, seq) in [1, 2, 2, 3, 1, 4].enumerated() {
            await producer.send(record(Int64(seq))) { box.set(index, $0) }
        }
        await producer.flush()
        let names = (0..<6).map { box.all[$0]?.name ?? "none" }
        XCTAssertEqual(names, ["committed", "committed", "replayed", "committed", "replayed", "committed"])
        let stored = try await consumeAll(admin, topic: "flips", partition: 0).map { try FlipEvent.decode(key: $0.key, value: $0.value).seq }
        XCTAssertEqual(stored, [1, 2, 3, 4])
        await producer.close()
        await admin.close()
        await server.stop()
    }

    /// The server restarts while a producer sends: the producer reconnects, keeps its
    /// identity, resends what was unanswered, and every record is stored exactly once.
    func testAProducerSurvivesAServerRestartWithoutDuplicates() async throws {
        var server = try await TestServer()
        let port = server.port
        let directory = server.directory
        let admin = try await server.connect()
        _ = try await admin.send(.createTopic(TopicInfo(name: "steady", partitionCount: 1, kind: .raw)))
        await admin.close()
        var configuration = ProducerConfiguration()
        configuration.lingerMilliseconds = 1
        configuration.batchRecordsMax = 20
        configuration.requestTimeoutMilliseconds = 2000
        let producer = IdempotentProducer(host: "127.0.0.1", port: port, topic: "steady", name: "steady-writer", configuration: configuration)
        try await producer.start()
        let identity = await producer.producerIdentity
        let box = OutcomeBox()
        for index in 0..<500 {
            await producer.send(ProducerRecord(key: nil, value: Array("r\(index)".utf8))) { box.set(index, $0) }
            if index == 250 {
                await server.server.shutdown()
                server.pool.shutdown()
                server = try await TestServer(reopening: directory, port: port)
            }
        }
        await producer.flush()
        let outcomes = box.all
        XCTAssertEqual(outcomes.count, 500)
        XCTAssertTrue(outcomes.values.allSatisfy { $0.name == "committed" || $0.name == "duplicate" }, "\(Set(outcomes.values.map(\.name)))")
        let identityAfter = await producer.producerIdentity
        XCTAssertEqual(identityAfter?.id, identity?.id)
        XCTAssertEqual(identityAfter?.epoch, identity?.epoch, "initialised once: no new epoch for a reconnect")
        let reader = try await server.connect()
        let values = try await consumeAll(reader, topic: "steady", partition: 0).map { String(decoding: $0.value ?? [], as: UTF8.self) }
        XCTAssertEqual(values.count, 500, "exactly once")
        XCTAssertEqual(values, (0..<500).map { "r\($0)" }, "in order")
        await producer.close()
        await reader.close()
        await server.stop()
    }

    func testAFencedProducerReportsFencedForEveryLaterRecord() async throws {
        let server = try await TestServer()
        let admin = try await server.connect()
        _ = try await admin.send(.createTopic(TopicInfo(name: "owned", partitionCount: 1, kind: .raw)))
        let zombie = IdempotentProducer(host: "127.0.0.1", port: server.port, topic: "owned", name: "owner")
        try await zombie.start()
        let first = await zombie.send(ProducerRecord(key: nil, value: [1]))
        XCTAssertEqual(first.name, "committed")
        let successor = IdempotentProducer(host: "127.0.0.1", port: server.port, topic: "owned", name: "owner")
        try await successor.start()
        let second = await zombie.send(ProducerRecord(key: nil, value: [2]))
        let third = await zombie.send(ProducerRecord(key: nil, value: [3]))
        let fourth = await successor.send(ProducerRecord(key: nil, value: [4]))
        XCTAssertEqual([second.name, third.name, fourth.name], ["fenced", "fenced", "committed"])
        await zombie.close()
        await successor.close()
        await admin.close()
        await server.stop()
    }
}
