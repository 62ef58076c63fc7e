import LogStorage
import Logging
import NIOCore
import Synchronization
import WireProtocol

/// One connection: the handshake, then requests answered in the order they came,
/// whenever their work completes. Thin: decoding is the codec's, work is the router's;
/// this keeps order, counts what is outstanding, and applies backpressure.
///
/// Backpressure: while `inFlightMax` requests are outstanding, or the channel is not
/// writable (the peer is not reading its responses), requests that arrive are parked, not
/// started, and the handler does not ask the socket for more bytes (it intercepts `read`);
/// parked requests start, and reading resumes, as both clear. One socket read can carry
/// hundreds of small requests, so refusing further reads alone would not do: without
/// parking, every request of that read would run and its answer wait in memory. So a slow
/// or greedy client slows itself, and what is buffered for it is bounded by the in-flight
/// limit's answers plus one read's worth of requests.
final class ConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = Frame
    typealias OutboundIn = Frame
    typealias OutboundOut = Frame

    enum Phase {
        case awaitingHello
        case ready(Principal)
        /// After an error that ends the connection: answer what came before, then close.
        case closing
    }

    /// What request `index` is answered with, once known: one frame, or the parts of an
    /// answer larger than a frame, written one after another.
    enum Slot: Sendable {
        case response([Frame])
        case none
    }

    private var phase = Phase.awaitingHello
    private var nextIndex: UInt64 = 0
    private var nextToWrite: UInt64 = 0
    private var completed: [UInt64: Slot] = [:]
    private var readSuppressed = false
    /// Requests read but not started, waiting for an in-flight slot or writability.
    private var parked = CircularBuffer<Frame>()
    /// A frame error that came after parked requests, answered once they have started.
    private var badFrame: ProtocolError?
    private var context: ChannelHandlerContext?

    let router: RequestRouter
    let tokens: TokenFile?
    let counters: ServerCounters
    let logger: Logger
    let serverName: String
    let inFlightMax: Int
    let handshakeTimeoutMilliseconds: Int64
    private var handshakeDeadline: Scheduled<Void>?

    init(router: RequestRouter, tokens: TokenFile?, counters: ServerCounters, logger: Logger, serverName: String, inFlightMax: Int, handshakeTimeoutMilliseconds: Int64) {
        self.router = router
        self.tokens = tokens
        self.counters = counters
        self.logger = logger
        self.serverName = serverName
        self.inFlightMax = inFlightMax
        self.handshakeTimeoutMilliseconds = handshakeTimeoutMilliseconds
    }

    private var inFlight: Int { Int(nextIndex - nextToWrite) }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        handshakeDeadline = context.eventLoop.scheduleTask(in: .milliseconds(handshakeTimeoutMilliseconds)) {
            loopBound.value.handshakeExpired()
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        handshakeDeadline?.cancel()
        self.context = nil
    }

    private func handshakeExpired() {
        guard case .awaitingHello = phase, let context else { return }
        counters.handshakeTimeouts.add(1, ordering: .relaxed)
        logger.info("closing a connection that did not complete its hello in time", metadata: [
            "peer": "\(context.channel.remoteAddress?.description ?? "?")", "milliseconds": "\(handshakeTimeoutMilliseconds)",
        ])
        context.close(promise: nil)
    }

    // MARK: Requests

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        if case .closing = phase { return }
        if !parked.isEmpty || !mayStart(context) {
            parked.append(frame)
            return
        }
        start(frame, context: context)
    }

    private func mayStart(_ context: ChannelHandlerContext) -> Bool {
        inFlight < inFlightMax && context.channel.isWritable
    }

    /// Starts parked requests while slots and writability allow; then, once none is left,
    /// answers a bad frame that came after them.
    private func startParked(_ context: ChannelHandlerContext) {
        while !parked.isEmpty, mayStart(context) {
            if case .closing = phase {
                parked.removeAll()
                return
            }
            start(parked.removeFirst(), context: context)
        }
        if parked.isEmpty, let error = badFrame {
            badFrame = nil
            failAfterParked(error)
        }
    }

    private func failAfterParked(_ error: ProtocolError) {
        if case .closing = phase { return }
        let index = nextIndex
        nextIndex += 1
        fail(index: index, requestId: 0, kind: .hello, error)
    }

    private func start(_ frame: Frame, context: ChannelHandlerContext) {
        counters.requests.add(1, ordering: .relaxed)
        let index = nextIndex
        nextIndex += 1
        let kind = MessageKind(rawValue: frame.kind)
        let request: Request
        do {
            request = try Request.decode(kind: frame.kind, payload: frame.payload)
        } catch {
            counters.malformedFrames.add(1, ordering: .relaxed)
            return fail(index: index, requestId: frame.requestId, kind: kind ?? .hello, error)
        }
        switch phase {
        case .closing:
            return
        case .awaitingHello:
            guard case .hello(let hello) = request else {
                return fail(index: index, requestId: frame.requestId, kind: request.kind, ProtocolError(.handshakeRequired, "the first request must be a hello"))
            }
            greet(hello, index: index, requestId: frame.requestId)
        case .ready(let principal):
            if case .hello = request {
                return fail(index: index, requestId: frame.requestId, kind: .hello, ProtocolError(.handshakeRequired, "a second hello on one connection"))
            }
            let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
            let eventLoop = context.eventLoop
            let requestId = frame.requestId
            let requestKind = request.kind
            router.handle(request, principal: principal, eventLoop: eventLoop) { result in
                // Encoded where the answer was made (a Pauli-Z answer can take 64 MiB), not
                // on the event loop.
                let slot: Slot = result.map { .response(ResponsePayload.frames(requestId: requestId, kind: requestKind, $0)) } ?? .none
                eventLoop.execute { loopBound.value.complete(index: index, slot: slot) }
            }
        }
    }

    private func greet(_ hello: HelloRequest, index: UInt64, requestId: UInt32) {
        if hello.maximumVersion < ProtocolVersion.minimum || hello.minimumVersion > ProtocolVersion.current {
            return fail(index: index, requestId: requestId, kind: .hello, ProtocolError(
                .unsupportedVersion, "the client speaks versions \(hello.minimumVersion) to \(hello.maximumVersion); this server speaks \(ProtocolVersion.minimum) to \(ProtocolVersion.current)"))
        }
        let principal: Principal
        if let tokens {
            guard let known = tokens.principal(for: hello.token) else {
                counters.authFailures.add(1, ordering: .relaxed)
                logger.warning("authentication failed", metadata: [
                    "client": "\(hello.clientName)", "peer": "\(context?.channel.remoteAddress?.description ?? "?")",
                    "tokenBytes": "\(hello.token.utf8.count)",
                ])
                return fail(index: index, requestId: requestId, kind: .hello, ProtocolError(.unauthenticated, "the token is not one this server knows"))
            }
            principal = known
        } else {
            principal = .open
        }
        phase = .ready(principal)
        handshakeDeadline?.cancel()
        handshakeDeadline = nil
        let version = min(hello.maximumVersion, ProtocolVersion.current)
        let reply = HelloReply(version: version, serverName: serverName, frameBytesMax: UInt32(WireLimits.frameBytesMax), inFlightRequestsMax: UInt32(inFlightMax))
        complete(index: index, slot: .response([ResponsePayload.frame(requestId: requestId, kind: .hello, .success(.hello(reply)))]))
    }

    /// Answers request `index` with an error and closes the connection once everything
    /// before it is answered.
    private func fail(index: UInt64, requestId: UInt32, kind: MessageKind, _ error: ProtocolError) {
        phase = .closing
        complete(index: index, slot: .response([ResponsePayload.frame(requestId: requestId, kind: kind, .failure(error))]))
    }

    // MARK: Responses in order

    func complete(index: UInt64, slot: Slot) {
        guard let context else { return }
        completed[index] = slot
        var wrote = false
        while let next = completed.removeValue(forKey: nextToWrite) {
            if case .response(let frames) = next {
                for frame in frames { context.write(wrapOutboundOut(frame), promise: nil) }
                wrote = true
            }
            nextToWrite += 1
        }
        if wrote { context.flush() }
        if case .closing = phase, nextToWrite == nextIndex {
            context.close(promise: nil)
            return
        }
        startParked(context)
        resumeReadingIfPossible(context)
    }

    // MARK: Backpressure

    func read(context: ChannelHandlerContext) {
        if !parked.isEmpty || !mayStart(context) {
            readSuppressed = true
            return
        }
        context.read()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        startParked(context)
        resumeReadingIfPossible(context)
        context.fireChannelWritabilityChanged()
    }

    private func resumeReadingIfPossible(_ context: ChannelHandlerContext) {
        guard readSuppressed, parked.isEmpty, mayStart(context) else { return }
        readSuppressed = false
        context.read()
    }

    // MARK: Errors and idleness

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let protocolError = error as? ProtocolError {
            counters.malformedFrames.add(1, ordering: .relaxed)
            logger.info("closing a connection that sent a bad frame", metadata: ["peer": "\(context.channel.remoteAddress?.description ?? "?")", "error": "\(protocolError)"])
            // Requests parked before the bad frame are answered first, then the error.
            if parked.isEmpty {
                failAfterParked(protocolError)
            } else {
                badFrame = protocolError
            }
            return
        }
        context.close(promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read, inFlight == 0 {
            logger.debug("closing an idle connection", metadata: ["peer": "\(context.channel.remoteAddress?.description ?? "?")"])
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}
