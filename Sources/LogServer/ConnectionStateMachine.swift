import NIOCore
import WireProtocol

/// A connection's rules, as a value that takes events and returns what to do
/// (SwiftNIO's state-machine style): the handshake and authentication, answers in the
/// order requests came, parking past the in-flight limit or while the peer does not read
/// its answers (backpressure), and closing after an error that ends the connection.
/// `ConnectionHandler` only feeds it events and carries out its actions; it is tested
/// without sockets (ConnectionStateMachineTests).
///
/// Requests are numbered in the order they are taken up (`index`); an answer is written
/// once every earlier one is. While `inFlightMax` requests are outstanding or the channel
/// is not writable, frames that arrive are parked, not decoded, and reads are refused; they
/// start, and reading resumes, as both clear. One socket read can carry hundreds of small
/// requests, so refusing reads alone would not bound what is held for a greedy client.
struct ConnectionStateMachine {
    enum Phase: Equatable {
        case awaitingHello
        case ready(Principal)
        /// After an error that ends the connection: answer what came before, then close.
        case closing
        case closed
    }

    /// A request to carry out; its answer comes back through `answered(index:frames:)`.
    struct Started: Equatable {
        var index: UInt64
        var requestId: UInt32
        var request: Request
        var principal: Principal
    }

    /// Something for the handler to note (count, log); no effect on the connection.
    enum Report: Equatable {
        case requestTaken
        case malformed(ProtocolError)
        case authenticationFailed(clientName: String, tokenBytes: Int)
        case handshakeTimedOut
        case idleClosed
    }

    enum Action: Equatable {
        case start(Started)
        case write(Frame)
        case flush
        /// Ask the socket for more bytes (a read that was refused earlier, now allowed).
        case read
        case close
        /// The hello is done: the handshake deadline no longer applies.
        case cancelHandshakeDeadline
        case report(Report)
    }

    let inFlightMax: Int
    let tokens: TokenFile?
    let serverName: String

    private(set) var phase = Phase.awaitingHello
    private var nextIndex: UInt64 = 0
    private var nextToWrite: UInt64 = 0
    /// Answers that came before an earlier one; nil frames: a request with no answer.
    private var completed: [UInt64: [Frame]?] = [:]
    private var parked = CircularBuffer<Frame>()
    /// A frame error that came after parked requests, answered once they have started.
    private var badFrame: FrameDecodingError?
    private var writable = true
    private var readRefused = false

    init(inFlightMax: Int, tokens: TokenFile?, serverName: String) {
        self.inFlightMax = inFlightMax
        self.tokens = tokens
        self.serverName = serverName
    }

    /// Requests taken up and not yet answered.
    var inFlight: Int { Int(nextIndex - nextToWrite) }
    var parkedCount: Int { parked.count }
    private var mayStart: Bool { inFlight < inFlightMax && writable }

    // MARK: Events

    mutating func frameReceived(_ frame: Frame) -> [Action] {
        switch phase {
        case .closing, .closed: return []
        case .awaitingHello, .ready: break
        }
        if !parked.isEmpty || !mayStart {
            parked.append(frame)
            return []
        }
        var actions: [Action] = []
        take(frame, into: &actions)
        return actions
    }

    /// The frame decoder failed: nothing after this can be read.
    mutating func frameFailed(_ error: FrameDecodingError) -> [Action] {
        switch phase {
        case .closing, .closed: return []
        case .awaitingHello, .ready: break
        }
        var actions: [Action] = [.report(.malformed(error.error))]
        if parked.isEmpty {
            fail(requestId: error.requestId, rawKind: error.kind, error.error, into: &actions)
        } else {
            // Requests parked before the bad frame are answered first, then the error.
            badFrame = error
        }
        return actions
    }

    /// Request `index` is answered with `frames` (nil: it has no answer, as an append with
    /// ack none).
    mutating func answered(index: UInt64, frames: [Frame]?) -> [Action] {
        if case .closed = phase { return [] }
        var actions: [Action] = []
        complete(index: index, frames: frames, into: &actions)
        if closeIfDone(into: &actions) { return actions }
        startParked(into: &actions)
        resumeReading(into: &actions)
        return actions
    }

    mutating func writabilityChanged(_ isWritable: Bool) -> [Action] {
        writable = isWritable
        guard isWritable else { return [] }
        var actions: [Action] = []
        startParked(into: &actions)
        resumeReading(into: &actions)
        return actions
    }

    /// The channel asks whether to read more bytes from the socket.
    mutating func readRequested() -> [Action] {
        if !parked.isEmpty || !mayStart {
            readRefused = true
            return []
        }
        return [.read]
    }

    mutating func handshakeDeadlinePassed() -> [Action] {
        guard case .awaitingHello = phase else { return [] }
        phase = .closed
        return [.report(.handshakeTimedOut), .close]
    }

    /// Nothing was read for the idle time.
    mutating func idleTimePassed() -> [Action] {
        guard inFlight == 0, parked.isEmpty else { return [] }
        if case .closed = phase { return [] }
        phase = .closed
        return [.report(.idleClosed), .close]
    }

    // MARK: Taking up requests

    private mutating func take(_ frame: Frame, into actions: inout [Action]) {
        actions.append(.report(.requestTaken))
        if case .awaitingHello = phase, frame.kind != MessageKind.hello.rawValue {
            return fail(requestId: frame.requestId, rawKind: frame.kind, ProtocolError(.handshakeRequired, "the first request must be a hello"), into: &actions)
        }
        let request: Request
        do {
            request = try Request.decode(kind: frame.kind, payload: frame.payload)
        } catch {
            // A field out of its range in a whole frame: answered, the connection stays.
            if error.code == .invalidArgument, case .ready = phase {
                return answerAtOnce(requestId: frame.requestId, rawKind: frame.kind, .failure(error), into: &actions)
            }
            actions.append(.report(.malformed(error)))
            return fail(requestId: frame.requestId, rawKind: frame.kind, error, into: &actions)
        }
        switch phase {
        case .closing, .closed:
            return
        case .awaitingHello:
            guard case .hello(let hello) = request else { preconditionFailure("a hello frame decoded as \(request.kind)") }
            greet(hello, requestId: frame.requestId, into: &actions)
        case .ready(let principal):
            if case .hello = request {
                return fail(requestId: frame.requestId, rawKind: frame.kind, ProtocolError(.handshakeRequired, "a second hello on one connection"), into: &actions)
            }
            let index = nextIndex
            nextIndex += 1
            actions.append(.start(Started(index: index, requestId: frame.requestId, request: request, principal: principal)))
        }
    }

    private mutating func greet(_ hello: HelloRequest, requestId: UInt32, into actions: inout [Action]) {
        if hello.maximumVersion < ProtocolVersion.minimum || hello.minimumVersion > ProtocolVersion.current {
            return fail(requestId: requestId, rawKind: MessageKind.hello.rawValue, ProtocolError(
                .unsupportedVersion, "the client speaks versions \(hello.minimumVersion) to \(hello.maximumVersion); this server speaks \(ProtocolVersion.minimum) to \(ProtocolVersion.current)"), into: &actions)
        }
        let principal: Principal
        if let tokens {
            guard let known = tokens.principal(for: hello.token) else {
                actions.append(.report(.authenticationFailed(clientName: hello.clientName, tokenBytes: hello.token.utf8.count)))
                let message = hello.token.isEmpty ? "this server needs a token and the hello has none" : "the token is not one this server knows"
                return fail(requestId: requestId, rawKind: MessageKind.hello.rawValue, ProtocolError(.unauthenticated, message), into: &actions)
            }
            principal = known
        } else {
            // A server without a token file is open to everyone it lets connect (loopback,
            // or --insecure); a token sent to it is not checked.
            principal = .open
        }
        phase = .ready(principal)
        actions.append(.cancelHandshakeDeadline)
        let version = min(hello.maximumVersion, ProtocolVersion.current)
        let reply = HelloReply(version: version, serverName: serverName, frameBytesMax: UInt32(WireLimits.frameBytesMax), inFlightRequestsMax: UInt32(inFlightMax))
        answerAtOnce(requestId: requestId, rawKind: MessageKind.hello.rawValue, .success(.hello(reply)), into: &actions)
    }

    /// Records an answer and writes every answer that is now next in order.
    private mutating func complete(index: UInt64, frames: [Frame]?, into actions: inout [Action]) {
        precondition(index >= nextToWrite && index < nextIndex && completed[index] == nil, "request \(index) answered twice or never started")
        completed[index] = .some(frames)
        var wrote = false
        while let next = completed.removeValue(forKey: nextToWrite) {
            if let frames = next {
                for frame in frames { actions.append(.write(frame)) }
                wrote = true
            }
            nextToWrite += 1
        }
        if wrote { actions.append(.flush) }
    }

    /// Answers a request the machine settles itself, in its place in the order.
    private mutating func answerAtOnce(requestId: UInt32, rawKind: UInt16, _ result: Result<Reply, ProtocolError>, into actions: inout [Action]) {
        let index = nextIndex
        nextIndex += 1
        complete(index: index, frames: [ResponsePayload.frame(requestId: requestId, rawKind: rawKind, result)], into: &actions)
    }

    /// Answers with an error that ends the connection, once everything before it is
    /// answered; nothing read after it is taken up.
    private mutating func fail(requestId: UInt32, rawKind: UInt16, _ error: ProtocolError, into actions: inout [Action]) {
        phase = .closing
        parked.removeAll()
        badFrame = nil
        answerAtOnce(requestId: requestId, rawKind: rawKind, .failure(error), into: &actions)
        _ = closeIfDone(into: &actions)
    }

    private mutating func closeIfDone(into actions: inout [Action]) -> Bool {
        guard case .closing = phase, nextToWrite == nextIndex else { return false }
        phase = .closed
        actions.append(.close)
        return true
    }

    /// Takes up parked requests while slots and writability allow; then, once none is
    /// left, answers a bad frame that came after them.
    private mutating func startParked(into actions: inout [Action]) {
        while !parked.isEmpty, mayStart {
            switch phase {
            case .closing, .closed:
                parked.removeAll()
                return
            case .awaitingHello, .ready:
                take(parked.removeFirst(), into: &actions)
            }
        }
        if parked.isEmpty, let error = badFrame {
            badFrame = nil
            switch phase {
            case .closing, .closed: return
            case .awaitingHello, .ready: fail(requestId: error.requestId, rawKind: error.kind, error.error, into: &actions)
            }
        }
    }

    private mutating func resumeReading(into actions: inout [Action]) {
        guard readRefused, parked.isEmpty, mayStart else { return }
        if case .closed = phase { return }
        readRefused = false
        actions.append(.read)
    }
}
