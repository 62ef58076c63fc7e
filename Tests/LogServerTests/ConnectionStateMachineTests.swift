@testable import LogServer
import LogFormat
import NIOCore
import WireProtocol
import XCTest

/// The connection's rules without a socket or a clock: events in, actions out.
final class ConnectionStateMachineTests: XCTestCase {
    typealias Machine = ConnectionStateMachine

    func machine(inFlightMax: Int = 64, tokens: TokenFile? = nil) -> Machine {
        Machine(inFlightMax: inFlightMax, tokens: tokens, serverName: "test")
    }

    func hello(_ id: UInt32 = 1, token: String = "", versions: ClosedRange<UInt16> = 1...1) -> Frame {
        Request.hello(HelloRequest(minimumVersion: versions.lowerBound, maximumVersion: versions.upperBound, clientName: "c", token: token)).frame(requestId: id)
    }

    func health(_ id: UInt32) -> Frame { Request.health.frame(requestId: id) }

    /// A greeted machine (the hello's answer already taken).
    func ready(inFlightMax: Int = 64) -> Machine {
        var m = machine(inFlightMax: inFlightMax)
        _ = m.frameReceived(hello())
        return m
    }

    func started(_ actions: [Machine.Action]) -> [Machine.Started] {
        actions.compactMap { if case .start(let s) = $0 { return s } else { return nil } }
    }

    func written(_ actions: [Machine.Action]) -> [Frame] {
        actions.compactMap { if case .write(let f) = $0 { return f } else { return nil } }
    }

    func error(in frame: Frame) throws -> ProtocolError? {
        let kind = try XCTUnwrap(MessageKind(rawValue: frame.kind & ~Frame.responseFlag))
        if case .failure(let error) = try ResponsePayload.decode(kind: kind, payload: frame.payload) { return error }
        return nil
    }

    func answer(_ id: UInt32) -> [Frame] { [ResponsePayload.frame(requestId: id, kind: .health, .success(.health(HealthReply(status: "ok", counters: []))))] }

    // MARK: Handshake and auth

    func testTheHelloIsAnsweredAtOnceAndEndsTheDeadline() throws {
        var m = machine()
        let actions = m.frameReceived(hello(7))
        XCTAssertTrue(actions.contains(.cancelHandshakeDeadline))
        let reply = try XCTUnwrap(written(actions).first)
        XCTAssertEqual(reply.requestId, 7)
        XCTAssertEqual(reply.kind, MessageKind.hello.rawValue | Frame.responseFlag)
        guard case .success(.hello(let hello)) = try ResponsePayload.decode(kind: .hello, payload: reply.payload) else { return XCTFail("no hello reply") }
        XCTAssertEqual(hello.inFlightRequestsMax, 64)
        XCTAssertEqual(hello.frameBytesMax, UInt32(WireLimits.frameBytesMax))
        XCTAssertEqual(m.phase, .ready(.open))
        XCTAssertEqual(m.handshakeDeadlinePassed(), [], "the deadline does nothing once greeted")
    }

    func testAnythingButAHelloFirstIsRefusedAndCloses() throws {
        for first in [health(3), Frame(requestId: 3, kind: 99, payload: ByteBuffer())] {
            var m = machine()
            let actions = m.frameReceived(first)
            let reply = try XCTUnwrap(written(actions).first)
            XCTAssertEqual(try error(in: Frame(requestId: 3, kind: MessageKind.health.rawValue | Frame.responseFlag, payload: reply.payload))?.code, .handshakeRequired)
            XCTAssertEqual(reply.kind, first.kind | Frame.responseFlag, "the answer carries the request's kind")
            XCTAssertEqual(actions.last, .close)
            XCTAssertTrue(started(actions).isEmpty)
        }
    }

    func testVersionsOutsideTheServersRangeAreRefused() throws {
        for versions: ClosedRange<UInt16> in [0...0, 2...5] {
            var m = machine()
            let actions = m.frameReceived(hello(versions: versions))
            XCTAssertEqual(try error(in: XCTUnwrap(written(actions).first))?.code, .unsupportedVersion, "\(versions)")
            XCTAssertEqual(actions.last, .close)
        }
        var m = machine()
        XCTAssertEqual(m.frameReceived(hello(versions: 0...3)).last, .flush, "a range that includes version 1 is accepted")
    }

    func testAWrongOrMissingTokenIsReportedAndCloses() throws {
        let tokens = TokenFile(entries: [.init(name: "ops", token: "s3cret", scopes: [.init(prefix: "", rights: [.admin])])])
        for (token, says) in [("guess", "not one this server knows"), ("", "has none")] {
            var m = machine(tokens: tokens)
            let actions = m.frameReceived(hello(token: token))
            XCTAssertTrue(actions.contains(.report(.authenticationFailed(clientName: "c", tokenBytes: token.utf8.count))))
            let refusal = try XCTUnwrap(error(in: XCTUnwrap(written(actions).first)))
            XCTAssertEqual(refusal.code, .unauthenticated)
            XCTAssertTrue(refusal.message.contains(says), refusal.message)
            XCTAssertEqual(actions.last, .close)
        }
        var m = machine(tokens: tokens)
        _ = m.frameReceived(hello(token: "s3cret"))
        XCTAssertEqual(m.phase, .ready(Principal(name: "ops", scopes: [.init(prefix: "", rights: [.admin])])))
        let request = started(m.frameReceived(health(2)))
        XCTAssertEqual(request.first?.principal.name, "ops", "requests carry the authenticated principal")
    }

    func testATokenSentToAServerWithoutATokenFileIsNotChecked() {
        var m = machine()
        _ = m.frameReceived(hello(token: "anything"))
        XCTAssertEqual(m.phase, .ready(.open))
    }

    func testTheHandshakeDeadlineClosesAConnectionThatNeverGreeted() {
        var m = machine()
        XCTAssertEqual(m.handshakeDeadlinePassed(), [.report(.handshakeTimedOut), .close])
        XCTAssertEqual(m.frameReceived(hello()), [], "nothing is taken up after the close")
    }

    func testASecondHelloIsRefusedAndCloses() throws {
        var m = ready()
        let actions = m.frameReceived(hello(9))
        XCTAssertEqual(try error(in: XCTUnwrap(written(actions).first))?.code, .handshakeRequired)
        XCTAssertEqual(actions.last, .close)
    }

    // MARK: Order of answers

    func testAnswersAreWrittenInRequestOrderWhateverOrderTheyComeIn() {
        var m = ready()
        var requests: [Machine.Started] = []
        for id in 1...5 { requests += started(m.frameReceived(health(UInt32(id)))) }
        XCTAssertEqual(requests.map(\.requestId), [1, 2, 3, 4, 5])
        XCTAssertEqual(m.inFlight, 5)
        var order: [UInt32] = []
        for index in [4, 2, 0, 3, 1] {
            let request = requests[index]
            order += written(m.answered(index: request.index, frames: answer(request.requestId))).map(\.requestId)
        }
        XCTAssertEqual(order, [1, 2, 3, 4, 5])
        XCTAssertEqual(m.inFlight, 0)
    }

    func testARequestWithoutAnAnswerKeepsItsPlace() {
        var m = ready()
        let a = started(m.frameReceived(health(1)))[0]
        let b = started(m.frameReceived(health(2)))[0]
        let c = started(m.frameReceived(health(3)))[0]
        XCTAssertEqual(written(m.answered(index: c.index, frames: answer(3))), [])
        XCTAssertEqual(m.answered(index: b.index, frames: nil), [], "ack none: nothing to write, nothing flushed")
        XCTAssertEqual(written(m.answered(index: a.index, frames: answer(1))).map(\.requestId), [1, 3])
    }

    func testAnAnswerInSeveralFramesIsWrittenWhole() {
        var m = ready()
        let a = started(m.frameReceived(health(1)))[0]
        let parts = answer(1) + answer(1) + answer(1)
        let actions = m.answered(index: a.index, frames: parts)
        XCTAssertEqual(written(actions), parts)
        XCTAssertEqual(actions.last, .flush)
    }

    // MARK: Parking and backpressure

    func testPastTheInFlightLimitRequestsParkAndReadsStop() {
        var m = ready(inFlightMax: 2)
        let first = started(m.frameReceived(health(1)))
        let second = started(m.frameReceived(health(2)))
        XCTAssertEqual(first.count + second.count, 2)
        XCTAssertEqual(m.frameReceived(health(3)), [], "parked, not started")
        XCTAssertEqual(m.frameReceived(health(4)), [])
        XCTAssertEqual(m.parkedCount, 2)
        XCTAssertEqual(m.readRequested(), [], "no more bytes are read while requests are parked")
        // One answer frees one slot: one parked request starts; reads stay off until both have.
        let afterFirst = m.answered(index: first[0].index, frames: answer(1))
        XCTAssertEqual(started(afterFirst).map(\.requestId), [3])
        XCTAssertFalse(afterFirst.contains(.read))
        let afterSecond = m.answered(index: second[0].index, frames: answer(2))
        XCTAssertEqual(started(afterSecond).map(\.requestId), [4])
        XCTAssertFalse(afterSecond.contains(.read), "the slots are full again")
        let request3 = started(afterFirst)[0]
        let afterThird = m.answered(index: request3.index, frames: answer(3))
        XCTAssertEqual(afterThird.last, .read, "the read refused earlier is asked for once a slot is free and nothing is parked")
        XCTAssertEqual(m.readRequested(), [.read])
    }

    func testAPeerThatDoesNotReadItsAnswersParksEverythingAfter() {
        var m = ready()
        XCTAssertEqual(m.writabilityChanged(false), [])
        XCTAssertEqual(m.frameReceived(health(1)), [])
        XCTAssertEqual(m.frameReceived(health(2)), [])
        XCTAssertEqual(m.readRequested(), [])
        let resumed = m.writabilityChanged(true)
        XCTAssertEqual(started(resumed).map(\.requestId), [1, 2], "parked requests start in their order")
        XCTAssertEqual(resumed.last, .read)
    }

    func testParkedRequestsComeBeforeNewOnesEvenWhenASlotIsFree() {
        var m = ready(inFlightMax: 1)
        let first = started(m.frameReceived(health(1)))[0]
        _ = m.frameReceived(health(2))
        _ = m.writabilityChanged(false)
        let freed = m.answered(index: first.index, frames: answer(1))
        XCTAssertTrue(started(freed).isEmpty, "not writable: the parked request waits")
        XCTAssertEqual(m.frameReceived(health(3)), [], "a new frame queues behind the parked one")
        let resumed = m.writabilityChanged(true)
        XCTAssertEqual(started(resumed).map(\.requestId), [2])
        XCTAssertEqual(m.parkedCount, 1)
    }

    // MARK: Errors

    func testAMalformedRequestIsAnsweredAfterEarlierOnesThenCloses() throws {
        var m = ready()
        let a = started(m.frameReceived(health(1)))[0]
        var truncated = Request.describeTopic("t").frame(requestId: 2)
        truncated.payload = truncated.payload.getSlice(at: 0, length: 1)!
        let actions = m.frameReceived(truncated)
        XCTAssertTrue(actions.contains { if case .report(.malformed) = $0 { return true } else { return false } })
        XCTAssertTrue(written(actions).isEmpty, "the error waits for the earlier answer")
        XCTAssertEqual(m.frameReceived(health(3)), [], "nothing after the bad request is taken up")
        let closing = m.answered(index: a.index, frames: answer(1))
        XCTAssertEqual(written(closing).map(\.requestId), [1, 2])
        XCTAssertEqual(try error(in: written(closing)[1])?.code, .malformed)
        XCTAssertEqual(closing.last, .close)
    }

    func testAFieldOutOfRangeIsInvalidArgumentAndTheConnectionStays() throws {
        var m = ready()
        var payload = ByteBuffer()
        payload.writeInteger(UInt16(1))
        payload.writeString("t")
        payload.writeInteger(UInt32(0))
        payload.writeInteger(UInt8(7))  // ack 7
        payload.writeInteger(UInt32(0))
        let actions = m.frameReceived(Frame(requestId: 5, kind: MessageKind.append.rawValue, payload: payload))
        let reply = try XCTUnwrap(written(actions).first)
        XCTAssertEqual(reply.requestId, 5)
        XCTAssertEqual(try error(in: reply)?.code, .invalidArgument)
        XCTAssertFalse(actions.contains(.close))
        XCTAssertEqual(started(m.frameReceived(health(6))).map(\.requestId), [6], "the connection goes on")
    }

    func testAnUnknownKindIsAnsweredWithItsOwnKindAndId() {
        var m = ready()
        let actions = m.frameReceived(Frame(requestId: 11, kind: 0x63, payload: ByteBuffer()))
        let reply = written(actions).first
        XCTAssertEqual(reply?.requestId, 11)
        XCTAssertEqual(reply?.kind, 0x8063)
        var payload = reply?.payload
        XCTAssertEqual(payload?.readInteger(as: UInt16.self), ErrorCode.unknownRequest.rawValue)
        XCTAssertEqual(actions.last, .close)
    }

    func testAFrameErrorAfterParkedRequestsIsAnsweredAfterThem() throws {
        var m = ready(inFlightMax: 1)
        let a = started(m.frameReceived(health(1)))[0]
        _ = m.frameReceived(health(2))
        let tooLarge = FrameDecodingError(ProtocolError(.frameTooLarge, "big"), requestId: 3, kind: MessageKind.append.rawValue)
        let failed = m.frameFailed(tooLarge)
        XCTAssertEqual(failed, [.report(.malformed(tooLarge.error))], "counted now, answered after the parked request")
        let afterA = m.answered(index: a.index, frames: answer(1))
        let b = try XCTUnwrap(started(afterA).first)
        XCTAssertEqual(b.requestId, 2)
        let end = m.answered(index: b.index, frames: answer(2))
        XCTAssertEqual(written(end).map(\.requestId), [2, 3])
        XCTAssertEqual(written(end)[1].kind, MessageKind.append.rawValue | Frame.responseFlag, "the error goes to the oversized frame's id and kind")
        XCTAssertEqual(end.last, .close)
    }

    func testAnUnreadableFrameIsAnsweredToIdZeroKindZero() throws {
        var m = ready()
        let actions = m.frameFailed(FrameDecodingError(ProtocolError(.malformed, "short")))
        let reply = try XCTUnwrap(written(actions).first)
        XCTAssertEqual(reply.requestId, 0)
        XCTAssertEqual(reply.kind, Frame.responseFlag)
        XCTAssertEqual(actions.last, .close)
    }

    func testIdleClosesOnlyWithNothingOutstanding() {
        var m = ready()
        let a = started(m.frameReceived(health(1)))[0]
        XCTAssertEqual(m.idleTimePassed(), [], "a request is outstanding (a long poll, a replay)")
        _ = m.answered(index: a.index, frames: answer(1))
        XCTAssertEqual(m.idleTimePassed(), [.report(.idleClosed), .close])
    }
}
