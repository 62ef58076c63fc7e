import Foundation
import LogClient
import LogFormat
import LogIO
import LogServer
import LogStorage
import Logging
import NIOCore
import NIOPosix
import WireProtocol
import XCTest

/// A server on a free loopback port over a fresh store, for one test.
final class TestServer {
    let directory: String
    let pool = IOThreadPool(threadCount: 2)
    let store: LogStore
    let server: LodestoneServer
    var port: Int { server.localAddress.port! }

    static var quiet: Logger {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return logger
    }

    init(tokens: TokenFile? = nil, reopening: String? = nil, port: Int = 0, configure: (inout ServerConfiguration) -> Void = { _ in }) async throws {
        directory = reopening ?? NSTemporaryDirectory() + "lodestone-server-" + UUID().uuidString
        store = try LogStore.open(directory: directory, environment: StorageEnvironment(fileIO: PosixFileIO(), executor: pool, logger: Self.quiet))
        var configuration = ServerConfiguration()
        configuration.port = port
        configuration.tokens = tokens
        configure(&configuration)
        server = try await LodestoneServer.start(configuration: configuration, store: store, writers: pool, logger: Self.quiet)
    }

    func connect(token: String = "") async throws -> LodestoneConnection {
        try await LodestoneConnection.connect(host: "127.0.0.1", port: port, token: token)
    }

    func stop() async {
        await server.shutdown()
        pool.shutdown()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

func rawBatch(_ values: [String], producer: (id: Int64, epoch: Int16, sequence: Int32)? = nil) -> ByteBuffer {
    ByteBuffer(bytes: RecordBatch.make(
        values: values.map { (Array("key".utf8), Array($0.utf8)) }, timestamp: 0,
        producerId: producer?.id ?? -1, producerEpoch: producer?.epoch ?? -1, baseSequence: producer?.sequence ?? -1).encoded())
}

func values(in records: ByteBuffer) throws -> [String] {
    var bytes = Array(records.readableBytesView)
    var values: [String] = []
    while !bytes.isEmpty {
        let header = try RecordBatchHeader.read(bytes: bytes)
        let batch = try RecordBatch.decode(Array(bytes[..<header.totalSize]), allowingControl: true)
        if !header.attributes.isControl { values += batch.records.map { String(decoding: $0.value ?? [], as: UTF8.self) } }
        bytes.removeFirst(header.totalSize)
    }
    return values
}

final class ServerTests: XCTestCase {
    func testCreateAppendFetchAndOffsetsRoundTrip() async throws {
        let server = try await TestServer()
        let connection = try await server.connect()
        XCTAssertEqual(connection.hello.version, 1)
        guard case .topic(let topic) = try await connection.send(.createTopic(TopicInfo(name: "events", partitionCount: 2, kind: .raw))) else { return XCTFail("createTopic") }
        XCTAssertEqual(topic.partitions.count, 2)
        guard case .append(let results) = try await connection.send(.append(AppendRequest(topic: "events", partition: 1, ack: .durable, batches: [rawBatch(["a", "b"]), rawBatch(["c"])]))) else { return XCTFail("append") }
        XCTAssertEqual(results.map(\.outcome), [.committed, .committed])
        XCTAssertEqual(results.map(\.baseOffset), [0, 2])
        guard case .fetch(let fetched) = try await connection.send(.fetch(FetchRequest(topic: "events", partition: 1, offset: 0, maxBytes: 1 << 20, maxWaitMilliseconds: 0))) else { return XCTFail("fetch") }
        XCTAssertEqual(try values(in: fetched.records), ["a", "b", "c"])
        XCTAssertEqual(fetched.nextOffset, 3)
        XCTAssertEqual(fetched.durableEnd, 3)
        guard case .listOffsets(let latest) = try await connection.send(.listOffsets(ListOffsetsRequest(topic: "events", partition: 1, mode: .latest))) else { return XCTFail("offsets") }
        XCTAssertEqual(latest.offset, 3)
        guard case .topics(let topics) = try await connection.send(.listTopics) else { return XCTFail("list") }
        XCTAssertEqual(topics.map(\.name), ["events"])
        do {
            _ = try await connection.send(.createTopic(TopicInfo(name: "events", partitionCount: 1, kind: .raw)))
            XCTFail("a second topic of the same name")
        } catch {
            XCTAssertEqual(error, .server(ProtocolError(.alreadyExists, "topic \"events\" exists")))
        }
        await connection.close()
        await server.stop()
    }

    func testALongPollFetchAnswersAsSoonAsDataIsDurable() async throws {
        let server = try await TestServer()
        let reader = try await server.connect()
        let writer = try await server.connect()
        _ = try await writer.send(.createTopic(TopicInfo(name: "tail", partitionCount: 1, kind: .raw)))
        let started = ContinuousClock.now
        async let fetched = reader.send(.fetch(FetchRequest(topic: "tail", partition: 0, offset: 0, maxBytes: 1 << 20, maxWaitMilliseconds: 10_000)))
        // The append comes once the fetch is parked on the partition: observed, not slept for.
        let partition = try XCTUnwrap(server.store.topic("tail")?.partitions.first)
        for _ in 0..<5_000 where partition.durableWaiterCount == 0 { try await Task.sleep(for: .milliseconds(1)) }
        XCTAssertEqual(partition.durableWaiterCount, 1, "the fetch waits for durable data")
        _ = try await writer.send(.append(AppendRequest(topic: "tail", partition: 0, ack: .durable, batches: [rawBatch(["news"])])))
        guard case .fetch(let reply) = try await fetched else { return XCTFail("fetch") }
        XCTAssertEqual(try values(in: reply.records), ["news"])
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(5), "answered by the append, not by the wait's end")
        let waited = ContinuousClock.now
        guard case .fetch(let empty) = try await reader.send(.fetch(FetchRequest(topic: "tail", partition: 0, offset: 1, maxBytes: 1 << 20, maxWaitMilliseconds: 300))) else { return XCTFail("fetch") }
        XCTAssertEqual(empty.records.readableBytes, 0)
        XCTAssertGreaterThanOrEqual(ContinuousClock.now - waited, .milliseconds(280), "with nothing new it waits out the wait")
        await reader.close()
        await writer.close()
        await server.stop()
    }

    func testAckNoneGetsNoReplyAndLands() async throws {
        let server = try await TestServer()
        let connection = try await server.connect()
        _ = try await connection.send(.createTopic(TopicInfo(name: "fire", partitionCount: 1, kind: .raw)))
        connection.sendWithoutReply(.append(AppendRequest(topic: "fire", partition: 0, ack: .none, batches: [rawBatch(["forget"])])))
        guard case .fetch(let reply) = try await connection.send(.fetch(FetchRequest(topic: "fire", partition: 0, offset: 0, maxBytes: 1 << 20, maxWaitMilliseconds: 2000))) else { return XCTFail("fetch") }
        XCTAssertEqual(try values(in: reply.records), ["forget"], "the next reply is the fetch's: ack none added none")
        await connection.close()
        await server.stop()
    }

    func testReplayOutcomesCrossTheWire() async throws {
        let server = try await TestServer()
        let connection = try await server.connect()
        _ = try await connection.send(.createTopic(TopicInfo(name: "flips", partitionCount: 1, kind: .flip)))
        guard case .producer(let id, let epoch) = try await connection.send(.initProducer(name: "emitter")) else { return XCTFail("init") }
        let event = FlipEvent(resource: "r", to: "on", epoch: 1, seq: 1, time: 5)
        let batch = ByteBuffer(bytes: RecordBatch.make(values: [(event.key, event.encodedValue())], timestamp: 0, producerId: id, producerEpoch: epoch, baseSequence: 0).encoded())
        guard case .append(let first) = try await connection.send(.append(AppendRequest(topic: "flips", partition: 0, ack: .durable, batches: [batch]))) else { return XCTFail("append") }
        XCTAssertEqual(first[0].outcome, .committed)
        guard case .append(let retry) = try await connection.send(.append(AppendRequest(topic: "flips", partition: 0, ack: .durable, batches: [batch]))) else { return XCTFail("append") }
        XCTAssertEqual(retry[0].outcome, .duplicate)
        XCTAssertEqual(retry[0].baseOffset, first[0].baseOffset)
        let replay = ByteBuffer(bytes: RecordBatch.make(values: [(event.key, event.encodedValue())], timestamp: 0).encoded())
        guard case .append(let refused) = try await connection.send(.append(AppendRequest(topic: "flips", partition: 0, ack: .durable, batches: [replay]))) else { return XCTFail("append") }
        XCTAssertEqual(refused[0].outcome, .refused)
        XCTAssertEqual(refused[0].refusals.map(\.reason), [.replayed])
        await connection.close()
        await server.stop()
    }

    func testHandshakeAndVersionRulesCloseTheConnection() async throws {
        let server = try await TestServer()
        let channel = try await RawClient.connect(port: server.port)
        let reply = try await channel.exchange(Request.listTopics.frame(requestId: 5))
        XCTAssertEqual(try reply.error(for: .listTopics)?.code, .handshakeRequired)
        let closed = try await channel.closedByServer()
        XCTAssertTrue(closed)
        let old = try await RawClient.connect(port: server.port)
        let refused = try await old.exchange(Request.hello(HelloRequest(minimumVersion: 0, maximumVersion: 0, clientName: "old", token: "")).frame(requestId: 1))
        XCTAssertEqual(try refused.error(for: .hello)?.code, .unsupportedVersion)
        let oldClosed = try await old.closedByServer()
        XCTAssertTrue(oldClosed)
        await server.stop()
    }

    func testAuthTokensScopesAndCounting() async throws {
        let path = NSTemporaryDirectory() + "tokens-" + UUID().uuidString + ".json"
        try #"{"tokens": [{"name": "writer", "token": "writer-token-0123456789", "scopes": [{"prefix": "prod/", "rights": ["produce", "consume"]}]}, {"name": "root", "token": "root-token-0123456789ab", "scopes": [{"prefix": "", "rights": ["admin"]}]}]}"#.write(toFile: path, atomically: true, encoding: .utf8)
        let server = try await TestServer(tokens: try TokenFile.load(path: path))
        do {
            _ = try await server.connect(token: "wrong-token-0123456789")
            XCTFail("an unknown token must be refused")
        } catch {
            guard case .server(let protocolError)? = error as? ClientError else { return XCTFail("\(error)") }
            XCTAssertEqual(protocolError.code, .unauthenticated)
        }
        let root = try await server.connect(token: "root-token-0123456789ab")
        _ = try await root.send(.createTopic(TopicInfo(name: "prod/flips", partitionCount: 1, kind: .raw)))
        _ = try await root.send(.createTopic(TopicInfo(name: "staging/x", partitionCount: 1, kind: .raw)))
        let writer = try await server.connect(token: "writer-token-0123456789")
        guard case .topics(let visible) = try await writer.send(.listTopics) else { return XCTFail("list") }
        XCTAssertEqual(visible.map(\.name), ["prod/flips"], "only topics the token may consume")
        guard case .append(let ok) = try await writer.send(.append(AppendRequest(topic: "prod/flips", partition: 0, ack: .durable, batches: [rawBatch(["x"])]))) else { return XCTFail("append") }
        XCTAssertEqual(ok[0].outcome, .committed)
        do {
            _ = try await writer.send(.append(AppendRequest(topic: "staging/x", partition: 0, ack: .durable, batches: [rawBatch(["x"])])))
            XCTFail("no right on staging/")
        } catch {
            guard case .server(let protocolError) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(protocolError.code, .unauthorized)
        }
        do {
            _ = try await writer.send(.createTopic(TopicInfo(name: "prod/new", partitionCount: 1, kind: .raw)))
            XCTFail("produce and consume do not include admin")
        } catch {
            guard case .server(let protocolError) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(protocolError.code, .unauthorized)
        }
        XCTAssertTrue(writer.isActive, "an unauthorized request keeps the connection")
        XCTAssertEqual(server.server.health.counters.first { $0.name == "auth_failures" }?.value, 1)
        await writer.close()
        await root.close()
        await server.stop()
        try? FileManager.default.removeItem(atPath: path)
    }

    func testAMalformedFrameClosesOnlyItsConnection() async throws {
        let server = try await TestServer()
        let good = try await server.connect()
        _ = try await good.send(.createTopic(TopicInfo(name: "safe", partitionCount: 1, kind: .raw)))
        let bad = try await RawClient.connect(port: server.port)
        _ = try await bad.exchange(Request.hello(HelloRequest(clientName: "bad", token: "")).frame(requestId: 1))
        var garbage = ByteBuffer()
        garbage.writeInteger(UInt32(6 + 3))
        garbage.writeInteger(UInt32(2))
        garbage.writeInteger(UInt16(MessageKind.append.rawValue))
        garbage.writeBytes([1, 2, 3])
        let reply = try await bad.exchangeRaw(garbage)
        XCTAssertEqual(try reply.error(for: .append)?.code, .malformed)
        let badClosed = try await bad.closedByServer()
        XCTAssertTrue(badClosed)
        guard case .append(let results) = try await good.send(.append(AppendRequest(topic: "safe", partition: 0, ack: .durable, batches: [rawBatch(["still fine"])]))) else { return XCTFail("append") }
        XCTAssertEqual(results[0].outcome, .committed)
        XCTAssertEqual(server.server.health.counters.first { $0.name == "malformed_frames" }?.value, 1)
        await good.close()
        await server.stop()
    }

    func testShutdownAnswersQueuedAppendsAndWritesTheCleanMarker() async throws {
        let server = try await TestServer()
        let connection = try await server.connect()
        _ = try await connection.send(.createTopic(TopicInfo(name: "last", partitionCount: 1, kind: .raw)))
        _ = try await connection.send(.append(AppendRequest(topic: "last", partition: 0, ack: .durable, batches: [rawBatch(["kept"])])))
        await server.server.shutdown()
        server.pool.shutdown()
        let report = try StoreChecker.check(directory: server.directory, fileIO: PosixFileIO())
        XCTAssertEqual(report.partitions.map(\.cleanShutdown), [true])
        XCTAssertEqual(report.partitions.map(\.batchCount), [1])
        try? FileManager.default.removeItem(atPath: server.directory)
    }
}

/// A bare socket client, to send exactly the bytes a test wants.
final class RawClient: @unchecked Sendable {
    let channel: any Channel
    let inbox: Inbox

    final class Inbox: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        private let lock = NSLock()
        private var buffer = ByteBuffer()
        private var closed = false

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var bytes = unwrapInboundIn(data)
            lock.withLock { _ = buffer.writeBuffer(&bytes) }
        }

        func channelInactive(context: ChannelHandlerContext) { lock.withLock { closed = true } }

        /// One whole frame, if one arrived.
        func takeFrame() -> Frame? {
            lock.withLock {
                guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self), buffer.readableBytes >= 4 + Int(length) else { return nil }
                buffer.moveReaderIndex(forwardBy: 4)
                let id = buffer.readInteger(as: UInt32.self)!
                let kind = buffer.readInteger(as: UInt16.self)!
                return Frame(requestId: id, kind: kind, payload: buffer.readSlice(length: Int(length) - 6)!)
            }
        }

        var isClosed: Bool { lock.withLock { closed } }
    }

    init(channel: any Channel, inbox: Inbox) {
        self.channel = channel
        self.inbox = inbox
    }

    static func connect(port: Int) async throws -> RawClient {
        let inbox = Inbox()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(inbox) } }
            .connect(host: "127.0.0.1", port: port).get()
        return RawClient(channel: channel, inbox: inbox)
    }

    func exchange(_ frame: Frame) async throws -> Frame {
        var bytes = ByteBuffer()
        try FrameEncoder().encode(data: frame, out: &bytes)
        return try await exchangeRaw(bytes)
    }

    func exchangeRaw(_ bytes: ByteBuffer) async throws -> Frame {
        try await channel.writeAndFlush(bytes)
        for _ in 0..<500 {
            if let frame = inbox.takeFrame() { return frame }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw ClientError.timedOut("no frame came back")
    }

    func closedByServer() async throws -> Bool {
        for _ in 0..<500 {
            if inbox.isClosed { return true }
            try await Task.sleep(for: .milliseconds(10))
        }
        return false
    }
}

extension Frame {
    func error(for kind: MessageKind) throws -> ProtocolError? {
        if case .failure(let error) = try ResponsePayload.decode(kind: kind, payload: payload) { return error }
        return nil
    }
}
