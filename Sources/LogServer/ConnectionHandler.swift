import LogStorage
import Logging
import NIOCore
import Synchronization
import WireProtocol

/// One connection, thin: the rules (handshake, auth, order of answers, parking and
/// backpressure, closing after errors) are `ConnectionStateMachine`'s; decoding is the
/// codec's, work is the router's. This handler feeds the machine the channel's events and
/// carries out the actions it returns: starting requests, writing answers, asking the
/// socket for bytes, closing, counting and logging.
final class ConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = Frame
    typealias OutboundIn = Frame
    typealias OutboundOut = Frame

    private var machine: ConnectionStateMachine
    private var context: ChannelHandlerContext?

    let router: RequestRouter
    let counters: ServerCounters
    let logger: Logger
    let handshakeTimeoutMilliseconds: Int64
    private var handshakeDeadline: Scheduled<Void>?

    init(router: RequestRouter, tokens: TokenFile?, counters: ServerCounters, logger: Logger, serverName: String, inFlightMax: Int, handshakeTimeoutMilliseconds: Int64) {
        self.machine = ConnectionStateMachine(inFlightMax: inFlightMax, tokens: tokens, serverName: serverName)
        self.router = router
        self.counters = counters
        self.logger = logger
        self.handshakeTimeoutMilliseconds = handshakeTimeoutMilliseconds
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        handshakeDeadline = context.eventLoop.scheduleTask(in: .milliseconds(handshakeTimeoutMilliseconds)) {
            let handler = loopBound.value
            handler.run(handler.machine.handshakeDeadlinePassed())
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        handshakeDeadline?.cancel()
        self.context = nil
    }

    // MARK: Events

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        run(machine.frameReceived(unwrapInboundIn(data)))
    }

    func read(context: ChannelHandlerContext) {
        run(machine.readRequested())
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        run(machine.writabilityChanged(context.channel.isWritable))
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        guard let frameError = error as? FrameDecodingError else {
            context.close(promise: nil)
            return
        }
        run(machine.frameFailed(frameError))
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read {
            run(machine.idleTimePassed())
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// An answer made on another thread, back on the event loop.
    private func answered(index: UInt64, frames: [Frame]?) {
        run(machine.answered(index: index, frames: frames))
    }

    // MARK: Actions

    private func run(_ actions: [ConnectionStateMachine.Action]) {
        guard let context else { return }
        for action in actions {
            switch action {
            case .start(let started):
                start(started, context: context)
            case .write(let frame):
                context.write(wrapOutboundOut(frame), promise: nil)
            case .flush:
                context.flush()
            case .read:
                context.read()
            case .close:
                context.close(promise: nil)
            case .cancelHandshakeDeadline:
                handshakeDeadline?.cancel()
                handshakeDeadline = nil
            case .report(let report):
                note(report, context: context)
            }
        }
    }

    private func start(_ started: ConnectionStateMachine.Started, context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        let (index, requestId, kind) = (started.index, started.requestId, started.request.kind)
        router.handle(started.request, principal: started.principal, eventLoop: eventLoop) { result in
            // Encoded where the answer was made (a Pauli-Z answer can take 64 MiB), not on
            // the event loop.
            let frames = result.map { ResponsePayload.frames(requestId: requestId, kind: kind, $0) }
            eventLoop.execute { loopBound.value.answered(index: index, frames: frames) }
        }
    }

    private func note(_ report: ConnectionStateMachine.Report, context: ChannelHandlerContext) {
        // Formatted only for a log line: `requestTaken` comes with every request.
        var peer: String { context.channel.remoteAddress?.description ?? "?" }
        switch report {
        case .requestTaken:
            counters.requests.add(1, ordering: .relaxed)
        case .malformed(let error):
            counters.malformedFrames.add(1, ordering: .relaxed)
            logger.info("closing a connection that sent a bad frame", metadata: ["peer": "\(peer)", "error": "\(error)"])
        case .authenticationFailed(let clientName, let tokenBytes):
            counters.authFailures.add(1, ordering: .relaxed)
            logger.warning("authentication failed", metadata: ["client": "\(clientName)", "peer": "\(peer)", "tokenBytes": "\(tokenBytes)"])
        case .handshakeTimedOut:
            counters.handshakeTimeouts.add(1, ordering: .relaxed)
            logger.info("closing a connection that did not complete its hello in time", metadata: [
                "peer": "\(peer)", "milliseconds": "\(handshakeTimeoutMilliseconds)",
            ])
        case .idleClosed:
            logger.debug("closing an idle connection", metadata: ["peer": "\(peer)"])
        }
    }
}
