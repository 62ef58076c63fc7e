import Foundation
import LogClient
import LogFormat
import LogServer
import LogSimulation
import LogStorage
import NIOCore
import NIOPosix
import WireProtocol
import XCTest

/// Hostile bytes on real loopback sockets: whatever a connection sends, the server closes
/// that connection (with an error frame where it can), keeps serving the others, and the
/// stored data stays as it was.
final class HostileInputTests: XCTestCase {
    /// A server holding topic "kept" with three committed records, and a check that it
    /// still serves a well-behaved client and still holds exactly those records.
    func makeServer(configure: (inout ServerConfiguration) -> Void = { _ in }) async throws -> TestServer {
        let server = try await TestServer(configure: configure)
        let connection = try await server.connect()
        _ = try await connection.send(.createTopic(TopicInfo(name: "kept", partitionCount: 1, kind: .raw)))
        _ = try await connection.send(.append(AppendRequest(topic: "kept", partition: 0, ack: .durable, batches: [rawBatch(["a", "b", "c"])])))
        await connection.close()
        return server
    }

    func assertStillServing(_ server: TestServer, file: StaticString = #filePath, line: UInt = #line) async throws {
        let connection = try await server.connect()
        guard case .fetch(let reply) = try await connection.send(.fetch(FetchRequest(topic: "kept", partition: 0, offset: 0, maxBytes: 1 << 20, maxWaitMilliseconds: 0))) else {
            return XCTFail("fetch was not answered", file: file, line: line)
        }
        XCTAssertEqual(try values(in: reply.records), ["a", "b", "c"], file: file, line: line)
        XCTAssertEqual(reply.durableEnd, 3, file: file, line: line)
        await connection.close()
    }

    func counter(_ server: TestServer, _ name: String) -> Int64? {
        server.server.health.counters.first { $0.name == name }?.value
    }

    func testRandomBytesCloseOnlyTheirConnection() async throws {
        let server = try await makeServer()
        var generator = SplitMix64(seed: 0x10DE)
        for round in 0..<40 {
            let client = try await RawClient.connect(port: server.port)
            // Half the rounds greet first, so the garbage reaches the request decoder too.
            if round % 2 == 1 { _ = try await client.exchange(Request.hello(HelloRequest(clientName: "fuzz", token: "")).frame(requestId: 1)) }
            let count = Int.random(in: 1...4096, using: &generator)
            var bytes = ByteBuffer()
            for _ in 0..<count { bytes.writeInteger(UInt8.random(in: 0...255, using: &generator)) }
            try await client.channel.writeAndFlush(bytes)
            // Random bytes either form a bad frame (closed at once) or an incomplete one
            // (closed by the handshake deadline or, after a hello, when we hang up).
            if !(try await client.closedByServer()) { try await client.channel.close() }
        }
        try await assertStillServing(server)
        await server.stop()
    }

    func testAHugeLengthPrefixIsRefusedWithoutWaitingForTheBytes() async throws {
        let server = try await makeServer()
        let client = try await RawClient.connect(port: server.port)
        var bytes = ByteBuffer()
        bytes.writeInteger(UInt32.max)
        bytes.writeInteger(UInt32(1))
        bytes.writeInteger(MessageKind.hello.rawValue)
        let reply = try await client.exchangeRaw(bytes)
        XCTAssertEqual(try reply.error(for: .hello)?.code, .frameTooLarge)
        XCTAssertEqual(reply.requestId, 1, "answered to the id in the oversized frame's header")
        XCTAssertEqual(reply.kind, MessageKind.hello.rawValue | Frame.responseFlag)
        let closed = try await client.closedByServer()
        XCTAssertTrue(closed)
        XCTAssertEqual(counter(server, "malformed_frames"), 1)
        try await assertStillServing(server)
        await server.stop()
    }

    func testAHalfFrameThenHangingUpHarmsNothing() async throws {
        let server = try await makeServer()
        let client = try await RawClient.connect(port: server.port)
        _ = try await client.exchange(Request.hello(HelloRequest(clientName: "half", token: "")).frame(requestId: 1))
        var frame = ByteBuffer()
        try FrameEncoder().encode(data: Request.append(AppendRequest(topic: "kept", partition: 0, ack: .durable, batches: [rawBatch(["never"])])).frame(requestId: 2), out: &frame)
        // TCP keeps order: the server reads the half frame, then the hang-up.
        try await client.channel.writeAndFlush(frame.getSlice(at: 0, length: frame.readableBytes / 2)!)
        try await client.channel.close()
        for _ in 0..<200 where counter(server, "malformed_frames") == 0 { try await Task.sleep(for: .milliseconds(10)) }
        XCTAssertEqual(counter(server, "malformed_frames"), 1, "the cut frame is counted when the peer hangs up")
        try await assertStillServing(server)
        await server.stop()
    }

    func testASlowLorisHelloIsCutOffAtTheHandshakeDeadline() async throws {
        let server = try await makeServer { $0.handshakeTimeoutMilliseconds = 400 }
        var hello = ByteBuffer()
        try FrameEncoder().encode(data: Request.hello(HelloRequest(clientName: "slow", token: "")).frame(requestId: 1), out: &hello)
        let client = try await RawClient.connect(port: server.port)
        let started = ContinuousClock.now
        // One byte every 50 ms: the whole hello would take far longer than the deadline.
        var sent = 0
        while sent < hello.readableBytes, !client.inbox.isClosed {
            try? await client.channel.writeAndFlush(hello.getSlice(at: sent, length: 1)!)
            sent += 1
            try await Task.sleep(for: .milliseconds(50))
        }
        XCTAssertTrue(client.inbox.isClosed, "the connection outlived the handshake deadline")
        XCTAssertLessThan(sent, hello.readableBytes)
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(5))
        XCTAssertNil(client.inbox.takeFrame(), "a half-sent hello got an answer")
        XCTAssertEqual(counter(server, "handshake_timeouts"), 1)
        try await assertStillServing(server)
        await server.stop()
    }

    func testAThousandConnectionsAreServedAndTheNextIsRefused() async throws {
        let server = try await makeServer { $0.connectionsMax = 1001 }
        var clients: [RawClient] = []
        // 1,000 connections, each greeted; then one more fills the limit (1,001, counting
        // the check's own connection below) and the one after is refused.
        for index in 0..<1000 {
            let client = try await RawClient.connect(port: server.port)
            let reply: Frame
            do {
                reply = try await client.exchange(Request.hello(HelloRequest(clientName: "many-\(index)", token: "")).frame(requestId: 1))
            } catch {
                return XCTFail("connection \(index): \(error); counters \(server.server.health.counters)")
            }
            XCTAssertNil(try reply.error(for: .hello))
            clients.append(client)
        }
        XCTAssertEqual(counter(server, "connections"), 1000)
        try await assertStillServing(server)
        for _ in 0..<500 where counter(server, "connections") != 1000 { try await Task.sleep(for: .milliseconds(10)) }
        let filler = try await server.connect()
        let extra = try await RawClient.connect(port: server.port)
        // The refusal comes unasked (the server may close before a hello could be sent).
        var refusal: Frame?
        for _ in 0..<500 where refusal == nil {
            refusal = extra.inbox.takeFrame()
            if refusal == nil { try await Task.sleep(for: .milliseconds(10)) }
        }
        XCTAssertEqual(try refusal?.error(for: .hello)?.code, .tooManyConnections)
        let extraClosed = try await extra.closedByServer()
        XCTAssertTrue(extraClosed)
        XCTAssertEqual(counter(server, "connections_refused"), 1)
        await filler.close()
        for client in clients { try? await client.channel.close() }
        for _ in 0..<500 where counter(server, "connections") != 0 { try await Task.sleep(for: .milliseconds(10)) }
        XCTAssertEqual(counter(server, "connections"), 0)
        try await assertStillServing(server)
        await server.stop()
    }

    /// A client that sends many fetches and does not read the answers: the server stops
    /// reading its requests (it buffers at most the in-flight answers, not all of them),
    /// serves others meanwhile, and answers everything, in order, once the client reads.
    func testASlowReaderIsThrottledWithoutHarmingOthers() async throws {
        let server = try await makeServer()
        let writer = try await server.connect()
        _ = try await writer.send(.createTopic(TopicInfo(name: "big", partitionCount: 1, kind: .raw)))
        let value = String(repeating: "v", count: 8000)
        for _ in 0..<4 {
            _ = try await writer.send(.append(AppendRequest(topic: "big", partition: 0, ack: .durable, batches: [rawBatch(Array(repeating: value, count: 100))])))
        }
        await writer.close()

        let answers = FrameCounter()
        let slow = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.autoRead, value: false)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([ByteToMessageHandler(FrameDecoder()), answers])
                }
            }
            .connect(host: "127.0.0.1", port: server.port).get()
        let fetches = 300
        let requestsBefore = counter(server, "requests") ?? 0
        var frames = ByteBuffer()
        try FrameEncoder().encode(data: Request.hello(HelloRequest(clientName: "slow reader", token: "")).frame(requestId: 0), out: &frames)
        for id in 1...fetches {
            let fetch = Request.fetch(FetchRequest(topic: "big", partition: 0, offset: 0, maxBytes: 1 << 20, maxWaitMilliseconds: 0))
            try FrameEncoder().encode(data: fetch.frame(requestId: UInt32(id)), out: &frames)
        }
        try await slow.writeAndFlush(frames)
        // Until the server stops starting requests (its answers fill the socket and it
        // stops reading, as ConnectionStateMachineTests pin without sockets): once it has
        // started some, no change in 300 ms, within 10 s.
        var started: Int64 = -1
        var unchangedSince = ContinuousClock.now
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline && (started <= 0 || ContinuousClock.now - unchangedSince < .milliseconds(300)) {
            let now = (counter(server, "requests") ?? 0) - requestsBefore
            if now != started { (started, unchangedSince) = (now, ContinuousClock.now) }
            try await Task.sleep(for: .milliseconds(10))
        }
        let readWhileStalled = (counter(server, "requests") ?? 0) - requestsBefore
        print("slow reader: \(readWhileStalled) requests started while its answers went unread")
        XCTAssertLessThan(readWhileStalled, 150, "the server kept reading requests whose answers nobody reads")
        XCTAssertGreaterThan(readWhileStalled, 0)
        try await assertStillServing(server)

        try await slow.setOption(ChannelOptions.autoRead, value: true).get()
        slow.read()
        for _ in 0..<3000 where answers.count < fetches + 1 { try await Task.sleep(for: .milliseconds(10)) }
        XCTAssertEqual(answers.count, fetches + 1, "every request answered once the client reads")
        XCTAssertEqual(answers.outOfOrder, 0)
        try await slow.close()
        await server.stop()
    }
}

/// Counts response frames and checks their request ids come in order (0, 1, 2, ...).
final class FrameCounter: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = Frame
    private let lock = NSLock()
    private var received = 0
    private var disorder = 0

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        lock.withLock {
            if frame.requestId != UInt32(received) { disorder += 1 }
            received += 1
        }
    }

    var count: Int { lock.withLock { received } }
    var outOfOrder: Int { lock.withLock { disorder } }
}
