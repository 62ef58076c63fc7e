import DequeModule
import LogFormat
import NIOCore
import NIOPosix
import Synchronization
import WireProtocol

/// LogClient speaks Lodestone's protocol from Swift: a connection (`LodestoneConnection`)
/// with pipelined requests, an idempotent producer that batches, retries and keeps its
/// identity (`IdempotentProducer`), and a consumer with fetch-ahead (`Consumer`).

/// Why a request got no reply.
public enum ClientError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The connection closed (or could not open) before the reply came.
    case connectionClosed(String)
    /// No reply within the time allowed; the connection is closed (replies come in order,
    /// so it cannot be trusted afterwards).
    case timedOut(String)
    /// The server answered with an error.
    case server(ProtocolError)
    /// The server's reply did not decode.
    case badReply(String)

    public var description: String {
        switch self {
        case .connectionClosed(let why): return "connection closed: \(why)"
        case .timedOut(let what): return "timed out: \(what)"
        case .server(let error): return "\(error)"
        case .badReply(let why): return "bad reply: \(why)"
        }
    }
}

/// A connection to one server, after a successful hello. Requests may be sent from any
/// task without waiting; replies come in order.
public final class LodestoneConnection: Sendable {
    public let hello: HelloReply
    let channel: any Channel
    let nextId = Atomic<UInt32>(1)

    init(channel: any Channel, hello: HelloReply) {
        self.channel = channel
        self.hello = hello
    }

    /// Connects, says hello (with the token, if any), and returns the connection.
    public static func connect(
        host: String, port: Int, token: String = "", clientName: String = "lodestone-swift",
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, connectTimeoutMilliseconds: Int64 = 5000
    ) async throws(ClientError) -> LodestoneConnection {
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(.milliseconds(connectTimeoutMilliseconds))
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandlers([
                            ByteToMessageHandler(FrameDecoder()), MessageToByteHandler(FrameEncoder()), ReplyMatcher(),
                        ])
                    }
                }
                .connect(host: host, port: port).get()
        } catch {
            throw .connectionClosed("cannot connect to \(host):\(port): \(error)")
        }
        let unconnected = LodestoneConnection(channel: channel, hello: HelloReply(version: 0, serverName: "", frameBytesMax: 0, inFlightRequestsMax: 0))
        do throws(ClientError) {
            guard case .hello(let hello) = try await unconnected.send(.hello(HelloRequest(clientName: clientName, token: token)), timeoutMilliseconds: connectTimeoutMilliseconds) else {
                throw ClientError.badReply("hello was not answered with a hello")
            }
            return LodestoneConnection(channel: channel, hello: hello)
        } catch {
            try? await channel.close()
            throw error
        }
    }

    /// Sends a request and waits for its reply (an error reply throws `.server`).
    public func send(_ request: Request, timeoutMilliseconds: Int64 = 30_000) async throws(ClientError) -> Reply {
        let id = nextId.wrappingAdd(1, ordering: .relaxed).oldValue
        let promise = channel.eventLoop.makePromise(of: Reply.self)
        let pending = PendingRequest(frame: request.frame(requestId: id), kind: request.kind, promise: promise)
        channel.writeAndFlush(pending, promise: nil)
        let channel = self.channel
        let timeout = channel.eventLoop.scheduleTask(in: .milliseconds(timeoutMilliseconds)) {
            promise.fail(ClientError.timedOut("\(request.kind) got no reply in \(timeoutMilliseconds) ms"))
            channel.close(promise: nil)
        }
        do {
            let reply = try await promise.futureResult.get()
            timeout.cancel()
            return reply
        } catch let error as ClientError {
            timeout.cancel()
            throw error
        } catch {
            timeout.cancel()
            throw .connectionClosed("\(error)")
        }
    }

    /// Sends a request that gets no reply (an append with ack none).
    public func sendWithoutReply(_ request: Request) {
        let id = nextId.wrappingAdd(1, ordering: .relaxed).oldValue
        channel.writeAndFlush(PendingRequest(frame: request.frame(requestId: id), kind: request.kind, promise: nil), promise: nil)
    }

    public var isActive: Bool { channel.isActive }

    public func close() async {
        try? await channel.close()
    }
}

/// A request on its way out, with the promise its reply fulfils (nil: no reply expected).
struct PendingRequest {
    var frame: Frame
    var kind: MessageKind
    var promise: EventLoopPromise<Reply>?
}

/// Matches replies to requests: the server answers in order, so the oldest outstanding
/// request is the one a reply belongs to (its id is checked).
final class ReplyMatcher: ChannelDuplexHandler {
    typealias InboundIn = Frame
    typealias OutboundIn = PendingRequest
    typealias OutboundOut = Frame

    private var outstanding = Deque<(id: UInt32, kind: MessageKind, promise: EventLoopPromise<Reply>)>()
    /// The parts of a Pauli-Z answer that came so far (they all answer the oldest request).
    private var partial: PaulizReply?
    private var partialParts = 0

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        if let replyPromise = request.promise {
            guard context.channel.isActive else {
                replyPromise.fail(ClientError.connectionClosed("the connection is closed"))
                promise?.fail(ChannelError.ioOnClosedChannel)
                return
            }
            outstanding.append((request.frame.requestId, request.kind, replyPromise))
        }
        context.write(wrapOutboundOut(request.frame), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard let first = outstanding.first else {
            // An error the server sends before closing, with no request of ours pending.
            return
        }
        var decoded: Result<Reply, ProtocolError>?
        if frame.requestId == first.id, first.kind == .pauliz {
            decoded = try? ResponsePayload.decode(kind: first.kind, payload: frame.payload)
            if case .success(.pauliz(let part)) = decoded, part.continued {
                // More parts follow: keep this one, answer nothing yet (bounded by the
                // answer limit, so a server cannot make the client hold without end).
                partialParts += 1
                guard partialParts <= WireLimits.paulizAnswerBytesMax / WireLimits.paulizPartBytesMax + 1 else {
                    outstanding.removeFirst()
                    first.promise.fail(ClientError.badReply("a Pauli-Z answer came in more parts than its limit allows"))
                    context.close(promise: nil)
                    return
                }
                if partial == nil { partial = part } else { partial!.append(part) }
                return
            }
            if var whole = partial, case .success(.pauliz(let last)) = decoded {
                whole.append(last)
                decoded = .success(.pauliz(whole))
            }
            partial = nil
            partialParts = 0
        }
        outstanding.removeFirst()
        guard frame.requestId == first.id || frame.requestId == 0, frame.kind == first.kind.rawValue | Frame.responseFlag || frame.requestId == 0 else {
            first.promise.fail(ClientError.badReply("reply \(frame.requestId) kind \(frame.kind) came for request \(first.id) kind \(first.kind.rawValue)"))
            context.close(promise: nil)
            return
        }
        do {
            switch try decoded ?? ResponsePayload.decode(kind: first.kind, payload: frame.payload) {
            case .success(let reply): first.promise.succeed(reply)
            case .failure(let error): first.promise.fail(ClientError.server(error))
            }
        } catch {
            first.promise.fail(ClientError.badReply("\(error)"))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        while let pending = outstanding.popFirst() { pending.promise.fail(ClientError.connectionClosed("the server closed the connection")) }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        while let pending = outstanding.popFirst() { pending.promise.fail(ClientError.connectionClosed("\(error)")) }
        context.close(promise: nil)
    }
}
