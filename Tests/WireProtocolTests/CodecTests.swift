import LogFormat
import NIOCore
import NIOEmbedded
import NIOTestUtils
import WireProtocol
import XCTest

final class FrameCodecTests: XCTestCase {
    func frame(_ id: UInt32, _ kind: UInt16, _ bytes: [UInt8]) -> Frame {
        Frame(requestId: id, kind: kind, payload: ByteBuffer(bytes: bytes))
    }

    func encoded(_ frames: [Frame]) throws -> ByteBuffer {
        var buffer = ByteBuffer()
        for frame in frames { try FrameEncoder().encode(data: frame, out: &buffer) }
        return buffer
    }

    /// NIO's verifier feeds the bytes whole, one byte at a time, and in random pieces.
    func testDecoderHandlesEverySplitOfTheInput() throws {
        let frames = [frame(1, 6, [1, 2, 3]), frame(2, 0x8006, []), frame(0xFFFF_FFFF, 9, Array(repeating: 7, count: 3000))]
        let input = try encoded(frames)
        try ByteToMessageDecoderVerifier.verifyDecoder(inputOutputPairs: [(input, frames)]) { FrameDecoder() }
    }

    func testFrameLayoutIsLengthIdKindPayload() throws {
        let bytes = try encoded([frame(0x0102_0304, 0x0506, [0xAA])])
        XCTAssertEqual(Array(bytes.readableBytesView), [0, 0, 0, 7, 1, 2, 3, 4, 5, 6, 0xAA])
    }

    func decodeThrows(_ bytes: [UInt8], frameBytesMax: Int = WireLimits.frameBytesMax) -> FrameDecodingError? {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder(frameBytesMax: frameBytesMax)))
        defer { _ = try? channel.finish() }
        do {
            try channel.writeInbound(ByteBuffer(bytes: bytes))
            return nil
        } catch {
            return error as? FrameDecodingError
        }
    }

    func testShortAndHugeLengthsAreRefusedBeforeAnyAllocation() {
        let short = decodeThrows([0, 0, 0, 5, 0, 0, 0, 0, 0])
        XCTAssertEqual(short?.error.code, .malformed)
        XCTAssertEqual(short?.requestId, 0, "a frame shorter than its header names no request")
        XCTAssertEqual(short?.kind, 0)
        XCTAssertNil(decodeThrows([0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0]), "a 4 GiB claim waits for its header, not its payload")
        let huge = decodeThrows([0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 9, 0, 6])
        XCTAssertEqual(huge?.error.code, .frameTooLarge, "a 4 GiB claim fails once its header is in")
        XCTAssertEqual(huge?.requestId, 9, "answered to the request it names")
        XCTAssertEqual(huge?.kind, 6)
        XCTAssertEqual(decodeThrows([0, 0x80, 0, 1, 0, 0, 0, 1, 0, 1])?.error.code, .frameTooLarge, "8 MiB + 1 after the length field")
        XCTAssertNil(decodeThrows([0, 0x80, 0, 0, 0, 0, 0, 1, 0, 1]), "exactly 8 MiB after the length field is a frame (waiting for its payload)")
        XCTAssertEqual(decodeThrows([0, 0, 0x10, 0x01, 0, 0, 0, 1, 0, 1], frameBytesMax: 4096)?.error.code, .frameTooLarge)
    }

    func testAHalfFrameWaitsAndEOFInTheMiddleIsAnError() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder()))
        try channel.writeInbound(ByteBuffer(bytes: [0, 0, 0, 10, 0, 0]))
        XCTAssertNil(try channel.readInbound(as: Frame.self))
        XCTAssertThrowsError(try channel.finish()) { error in
            XCTAssertEqual((error as? FrameDecodingError)?.error.code, .malformed)
        }
    }
}

final class MessageCodecTests: XCTestCase {
    let batch = ByteBuffer(bytes: RecordBatch.make(values: [(Array("k".utf8), Array("v".utf8))], timestamp: 0).encoded())

    var requests: [Request] {
        [
            .hello(HelloRequest(clientName: "test", token: "secret")),
            .createTopic(TopicInfo(name: "prod/flips", partitionCount: 12, kind: .flip, polarityMap: [("leader", 1), ("follower", -1)], stormIntervalMilliseconds: 30_000, stormEnter: 4, stormExit: 1)),
            .createTopic(TopicInfo(name: "raw", partitionCount: 1, kind: .raw)),
            .listTopics,
            .describeTopic("prod/flips"),
            .initProducer(name: "emitter-7"),
            .initProducer(name: nil),
            .append(AppendRequest(topic: "t", partition: 3, ack: .durable, batches: [batch, batch])),
            .append(AppendRequest(topic: "t", partition: 0, ack: .none, batches: [])),
            .fetch(FetchRequest(topic: "t", partition: 2, offset: 99, maxBytes: 1 << 20, maxWaitMilliseconds: 500)),
            .listOffsets(ListOffsetsRequest(topic: "t", partition: 1, mode: .time, time: -5)),
            .health,
            .pauliz(PaulizRequest(topic: "flips", windowMilliseconds: 60_000, hopMilliseconds: 60_000)),
            .pauliz(PaulizRequest(
                topic: "flips", windowMilliseconds: 600_000, hopMilliseconds: 60_000, from: -5, to: 1_767_225_600_000, filter: .prefix("prod/eu"),
                stormIntervalMilliseconds: 30_000, stormEnter: 4, stormExit: 0)),
            .pauliz(PaulizRequest(topic: "flips", windowMilliseconds: 1, hopMilliseconds: 1, filter: .exact("r"), stormExit: 1)),
        ]
    }

    func testEveryRequestRoundTrips() throws {
        for request in requests {
            let decoded = try Request.decode(kind: request.kind.rawValue, payload: request.encodePayload())
            XCTAssertEqual(decoded, request)
        }
    }

    func testEveryReplyRoundTrips() throws {
        let replies: [(MessageKind, Result<Reply, ProtocolError>)] = [
            (.hello, .success(.hello(HelloReply(version: 1, serverName: "lodestone", frameBytesMax: 8 << 20, inFlightRequestsMax: 64)))),
            (.createTopic, .success(.topic(TopicInfo(name: "x", partitionCount: 2, kind: .raw, partitions: [.init(start: 0, end: 5), .init(start: 3, end: 3)])))),
            (.listTopics, .success(.topics([TopicInfo(name: "a", partitionCount: 1, kind: .flip), TopicInfo(name: "b", partitionCount: 3, kind: .raw)]))),
            (.initProducer, .success(.producer(producerId: 42, epoch: 7))),
            (.append, .success(.append([
                BatchResult(outcome: .committed, baseOffset: 10, lastOffset: 12, appendTime: 1_764_000_000_000),
                BatchResult(outcome: .refused, refusals: [RecordRefusal(index: 1, reason: .replayed, message: "r: (1, 2) is not after (1, 3)")]),
                BatchResult(error: .overloaded, message: "retry later", outcome: .noOutcome),
                BatchResult(outcome: .refused, refusals: [RecordRefusal(index: 0, reason: .wait, message: "at most 5 batches in flight")]),
            ]))),
            (.fetch, .success(.fetch(FetchReply(logStart: 0, durableEnd: 100, nextOffset: 50, records: batch)))),
            (.listOffsets, .success(.listOffsets(ListOffsetsReply(offset: -1, start: 0, end: 9)))),
            (.health, .success(.health(HealthReply(status: "ok", counters: [("connections", 3), ("auth_failures", 0)])))),
            (.pauliz, .success(.pauliz(PaulizReply(horizon: nil, eventsRead: 0, rows: [], episodes: [])))),
            (.pauliz, .success(.pauliz(PaulizReply(
                horizon: 1_767_225_780_000, eventsRead: 9,
                rows: [PaulizReply.Row(resource: "prod/eu-1/db/role", windowStart: 1_767_225_600_000, figures: [5, 4, 2, 2, 3, 0, 0, 0, 0, 60_000, 40_000, 35_000])],
                episodes: [
                    PaulizReply.Episode(resource: "prod/eu-1/db/role", start: 1_767_225_625_000, end: 1_767_225_680_000, flips: 4, peak: 4),
                    PaulizReply.Episode(resource: "r", start: -3, end: nil, flips: 9, peak: 6),
                ])))),
            (.pauliz, .failure(ProtocolError(.limitReached, "narrow it"))),
            (.fetch, .failure(ProtocolError(.offsetOutOfRange, "offset 9 is past 5"))),
        ]
        for (kind, result) in replies {
            let frame = ResponsePayload.frame(requestId: 9, kind: kind, result)
            XCTAssertTrue(frame.isResponse)
            XCTAssertEqual(try ResponsePayload.decode(kind: kind, payload: frame.payload), result, "\(kind)")
        }
    }

    func testUnknownKindTrailingBytesAndTruncationsAreErrorsNamingTheField() {
        XCTAssertThrowsError(try Request.decode(kind: 77, payload: ByteBuffer())) { XCTAssertEqual(($0 as? ProtocolError)?.code, .unknownRequest) }
        var trailing = Request.health.encodePayload()
        trailing.writeInteger(UInt8(0))
        XCTAssertThrowsError(try Request.decode(kind: MessageKind.health.rawValue, payload: trailing)) { XCTAssertEqual(($0 as? ProtocolError)?.code, .malformed) }
        for request in requests {
            let payload = request.encodePayload()
            for length in 0..<payload.readableBytes {
                XCTAssertThrowsError(try Request.decode(kind: request.kind.rawValue, payload: payload.getSlice(at: 0, length: length)!), "\(request.kind) cut at \(length)") { error in
                    XCTAssertEqual((error as? ProtocolError)?.code, .malformed)
                }
            }
        }
    }

    func testAbsurdCountsAreRefusedWithoutAllocating() {
        var payload = ByteBuffer()
        payload.writeWireStringForTest("t")
        payload.writeInteger(UInt32(0))
        payload.writeInteger(UInt8(0))
        payload.writeInteger(UInt32.max)
        XCTAssertThrowsError(try Request.decode(kind: MessageKind.append.rawValue, payload: payload)) { error in
            XCTAssertTrue((error as? ProtocolError)?.message.contains("exceed the limit") ?? false, "\(error)")
        }
        var fits = ByteBuffer()
        fits.writeWireStringForTest("t")
        fits.writeInteger(UInt32(0))
        fits.writeInteger(UInt8(0))
        fits.writeInteger(UInt32(1000))
        XCTAssertThrowsError(try Request.decode(kind: MessageKind.append.rawValue, payload: fits)) { error in
            XCTAssertTrue((error as? ProtocolError)?.message.contains("cannot fit") ?? false, "\(error)")
        }
    }

    /// A whole frame whose value is out of its range is `invalid_argument` (the connection
    /// stays, Docs/protocol.md); only bytes that do not decode are `malformed`.
    func testOutOfRangeValuesAreInvalidArgumentNotMalformed() throws {
        func patched(_ request: Request, at offset: Int, _ byte: UInt8) -> ByteBuffer {
            var payload = request.encodePayload()
            payload.setInteger(byte, at: payload.readerIndex + offset)
            return payload
        }
        let raw = Request.createTopic(TopicInfo(name: "t", partitionCount: 1, kind: .raw))
        let append = Request.append(AppendRequest(topic: "t", partition: 0, ack: .durable, batches: []))
        let offsets = Request.listOffsets(ListOffsetsRequest(topic: "t", partition: 0, mode: .earliest))
        let pauliz = Request.pauliz(PaulizRequest(topic: "t", windowMilliseconds: 60_000, hopMilliseconds: 60_000))
        let cases: [(String, MessageKind, ByteBuffer)] = [
            ("topic.kind", .createTopic, patched(raw, at: 3 + 4, 2)),
            ("topic.hasPolarityMap", .createTopic, patched(raw, at: 3 + 4 + 1 + 8, 2)),
            ("initProducer.hasName", .initProducer, patched(.initProducer(name: nil), at: 0, 2)),
            ("append.ack", .append, patched(append, at: 3 + 4, 3)),
            ("listOffsets.mode", .listOffsets, patched(offsets, at: 3 + 4, 3)),
            ("pauliz.flags", .pauliz, patched(pauliz, at: 3 + 16, 0x20)),
            ("pauliz.filter", .pauliz, patched(pauliz, at: 3 + 16 + 1 + 24 + 8, 3)),
        ]
        for (field, kind, payload) in cases {
            XCTAssertThrowsError(try Request.decode(kind: kind.rawValue, payload: payload), field) { error in
                XCTAssertEqual((error as? ProtocolError)?.code, .invalidArgument, "\(field): \(error)")
                XCTAssertTrue((error as? ProtocolError)?.message.contains(field) ?? false, "\(error)")
            }
        }
        var tooMany = ByteBuffer()
        tooMany.writeWireStringForTest("t")
        tooMany.writeInteger(UInt32(0))
        tooMany.writeInteger(UInt8(0))
        tooMany.writeInteger(UInt32(WireLimits.appendBatchCountMax + 1))
        for _ in 0...WireLimits.appendBatchCountMax { tooMany.writeInteger(UInt32(0)) }
        XCTAssertThrowsError(try Request.decode(kind: MessageKind.append.rawValue, payload: tooMany)) { error in
            XCTAssertEqual((error as? ProtocolError)?.code, .invalidArgument, "more batches than appendBatchCountMax: \(error)")
        }
    }

    func testInvalidUTF8InAStringIsMalformed() {
        var payload = ByteBuffer()
        payload.writeInteger(UInt16(2))
        payload.writeBytes([0xC3, 0x28])
        XCTAssertThrowsError(try Request.decode(kind: MessageKind.describeTopic.rawValue, payload: payload)) { XCTAssertEqual(($0 as? ProtocolError)?.code, .malformed) }
    }

    func testEveryErrorCodeHasAUniqueName() {
        let names = ErrorCode.allCases.map(\.name)
        XCTAssertEqual(Set(names).count, names.count)
        XCTAssertTrue(names.allSatisfy { !$0.isEmpty && $0 == $0.lowercased() })
    }

    /// A Pauli-Z answer larger than a frame goes out in parts of at most a frame each,
    /// every part but the last marked continued; joined, the parts are the answer.
    func testLargePaulizAnswersSplitIntoFramesAndJoinBack() throws {
        var rows: [PaulizReply.Row] = []
        for index in 0..<70_000 {
            let figures: [Int64] = (0..<PaulizReply.Row.figureCount).map { (figure: Int) -> Int64 in Int64(index * 31 + figure) }
            let resource = "region-\(index % 7)/service-\(index % 50)/instance-\(index)"
            rows.append(PaulizReply.Row(resource: resource, windowStart: Int64(index / 700) * 60_000, figures: figures))
        }
        var episodes: [PaulizReply.Episode] = []
        for index in 0..<5_000 {
            let end: Int64? = index % 3 == 0 ? nil : Int64(index + 9)
            episodes.append(PaulizReply.Episode(resource: "r\(index)", start: Int64(index), end: end, flips: 5, peak: 6))
        }
        let answer = PaulizReply(horizon: 1_767_225_600_000, eventsRead: 70_000, rows: rows, episodes: episodes)
        XCTAssertGreaterThan(answer.encodedBytes, WireLimits.paulizPartBytesMax, "the answer needs more than one frame")
        let frames = ResponsePayload.frames(requestId: 4, kind: .pauliz, .success(.pauliz(answer)))
        XCTAssertEqual(frames.count, 2)
        var joined: PaulizReply?
        for (number, frame) in frames.enumerated() {
            XCTAssertLessThanOrEqual(frame.payload.readableBytes, WireLimits.paulizPartBytesMax + 2)
            guard case .success(.pauliz(let part)) = try ResponsePayload.decode(kind: .pauliz, payload: frame.payload) else { return XCTFail("part \(number)") }
            XCTAssertEqual(part.continued, number < frames.count - 1)
            XCTAssertEqual(part.horizon, answer.horizon)
            if joined == nil { joined = part } else { joined!.append(part) }
        }
        XCTAssertEqual(joined, answer)
        // One that fits is one frame, not continued.
        let small = PaulizReply(horizon: nil, eventsRead: 1, rows: Array(rows.prefix(10)), episodes: [])
        XCTAssertEqual(small.parts(bytesMax: WireLimits.paulizPartBytesMax), [small])
        // Only bits 0 (horizon) and 1 (continued) of the flags are known.
        var payload = ResponsePayload.encode(.success(.pauliz(small)))
        payload.setInteger(UInt8(4), at: 2)
        XCTAssertThrowsError(try ResponsePayload.decode(kind: .pauliz, payload: payload)) { XCTAssertEqual(($0 as? ProtocolError)?.code, .malformed) }
    }
}

extension ByteBuffer {
    mutating func writeWireStringForTest(_ text: String) {
        writeInteger(UInt16(text.utf8.count))
        writeString(text)
    }
}
