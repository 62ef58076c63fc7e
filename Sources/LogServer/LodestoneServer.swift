import LogIO
import LogStorage
import Logging
import NIOCore
import NIOPosix
import Synchronization
import WireProtocol

/// LogServer puts a `LogStore` on the network: SwiftNIO with thin handlers
/// (`ConnectionHandler`), storage work off the event loops (`RequestRouter`), auth
/// (`TokenFile`), and limits on connections, frames, in-flight requests and idle time.
public struct ServerConfiguration: Sendable {
    public var host = "127.0.0.1"
    public var port = 7400
    /// Nil: no authentication (allowed on loopback, or with `insecure`).
    public var tokens: TokenFile?
    public var connectionsMax = 1024
    public var idleTimeoutSeconds: Int64 = 300
    /// A connection that has not completed its hello by then is closed, so that clients
    /// that connect and trickle bytes (or nothing) cannot hold connections for long.
    public var handshakeTimeoutMilliseconds: Int64 = 10_000
    public var inFlightRequestsMax = WireLimits.inFlightRequestsMax
    public var eventLoopThreads = 2
    /// Threads of the query pool (fetches, offsets by time, Pauli-Z answers and replays),
    /// and how many requests may wait for one before `overloaded` (Docs/limits.md).
    public var queryThreads = 2
    public var queryQueuedMax = 64
    /// Niceness of the query threads: they yield the CPU to writers and event loops.
    public var queryNiceness: Int32 = 10
    public var serverName = "lodestone"

    public init() {}
}

public final class LodestoneServer: Sendable {
    public let localAddress: SocketAddress
    let group: MultiThreadedEventLoopGroup
    let serverChannel: any Channel
    let store: LogStore
    let counters: ServerCounters
    let children: OpenChannels
    let live: LivePauliZ
    let router: RequestRouter
    let queries: IOThreadPool
    let logger: Logger

    private init(localAddress: SocketAddress, group: MultiThreadedEventLoopGroup, serverChannel: any Channel, store: LogStore, counters: ServerCounters, children: OpenChannels, router: RequestRouter, logger: Logger) {
        self.localAddress = localAddress
        self.group = group
        self.serverChannel = serverChannel
        self.store = store
        self.counters = counters
        self.children = children
        self.router = router
        self.live = router.live
        self.queries = router.queries
        self.logger = logger
    }

    /// Binds and starts accepting. `writers` is the store's writer pool (it also runs
    /// producer inits and topic creation); the server adds its own query pool and the live
    /// Pauli-Z threads (Docs/design.md, "Threads"). `live` is for tests.
    public static func start(configuration: ServerConfiguration, store: LogStore, writers: any BlockingExecutor, logger: Logger) async throws -> LodestoneServer {
        try await start(configuration: configuration, store: store, writers: writers, live: LivePauliZ(logger: logger), logger: logger)
    }

    static func start(configuration: ServerConfiguration, store: LogStore, writers: any BlockingExecutor, live: LivePauliZ, logger: Logger) async throws -> LodestoneServer {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: configuration.eventLoopThreads)
        let counters = ServerCounters()
        let queries = IOThreadPool(threadCount: configuration.queryThreads, queuedMax: configuration.queryQueuedMax, niceness: configuration.queryNiceness, name: "lodestone-query")
        let router = RequestRouter(store: store, writers: writers, queries: queries, counters: counters, live: live, logger: logger)
        let children = OpenChannels()
        let tokens = configuration.tokens
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.writeBufferWaterMark, value: ChannelOptions.Types.WriteBufferWaterMark(low: 1 << 20, high: 8 << 20))
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { channel in
                let active = counters.connections.wrappingAdd(1, ordering: .relaxed).newValue
                counters.connectionsTotal.add(1, ordering: .relaxed)
                let id = ObjectIdentifier(channel)
                children.channels.withLock { $0[id] = channel }
                channel.closeFuture.whenComplete { _ in
                    counters.connections.subtract(1, ordering: .relaxed)
                    children.channels.withLock { _ = $0.removeValue(forKey: id) }
                }
                if active > configuration.connectionsMax {
                    counters.connectionsRefused.add(1, ordering: .relaxed)
                    let refusal = ResponsePayload.frame(requestId: 0, kind: .hello, .failure(ProtocolError(.tooManyConnections, "the server holds its limit of \(configuration.connectionsMax) connections")))
                    return channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandlers([MessageToByteHandler(FrameEncoder()), RefusingHandler(refusal: refusal)])
                    }
                }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        IdleStateHandler(readTimeout: .seconds(configuration.idleTimeoutSeconds)),
                        ByteToMessageHandler(FrameDecoder(frameBytesMax: WireLimits.frameBytesMax)),
                        MessageToByteHandler(FrameEncoder()),
                        ConnectionHandler(
                            router: router, tokens: tokens, counters: counters, logger: logger, serverName: configuration.serverName,
                            inFlightMax: configuration.inFlightRequestsMax, handshakeTimeoutMilliseconds: configuration.handshakeTimeoutMilliseconds),
                    ])
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.bind(host: configuration.host, port: configuration.port).get()
        } catch {
            try? await group.shutdownGracefully()
            queries.shutdown()
            throw error
        }
        // Live Pauli-Z state, built from the durable log by a thread of its own while the
        // server listens (queries are replayed until a topic's state is ready).
        live.start(store: store, logger: logger)
        let server = LodestoneServer(
            localAddress: channel.localAddress!, group: group, serverChannel: channel, store: store, counters: counters, children: children, router: router, logger: logger)
        logger.info("listening", metadata: ["address": "\(channel.localAddress!)", "auth": "\(tokens == nil ? "off" : "on")"])
        return server
    }

    /// Graceful shutdown: stop accepting; stop the live Pauli-Z threads; let running
    /// queries end (those still waiting for a thread are dropped: their connections close
    /// without an answer) so that no read uses a file the store is closing; close the
    /// store, which lets every partition's writer finish what is queued (those appends are
    /// answered) and writes the clean-shutdown records; give connections a moment to send
    /// those answers; close them.
    public func shutdown() async {
        logger.info("shutting down: no new connections")
        counters.stopping.store(true, ordering: .relaxed)
        try? await serverChannel.close()
        live.stop()
        let dropped = queries.shutdown(droppingQueued: true)
        if dropped > 0 { logger.notice("queries not started at shutdown were dropped", metadata: ["count": "\(dropped)"]) }
        do {
            try await store.close()
        } catch {
            logger.error("closing the store failed; the next start recovers as after a crash", metadata: ["error": "\(error)"])
        }
        try? await Task.sleep(for: .milliseconds(100))
        for channel in children.channels.withLock({ Array($0.values) }) { try? await channel.close() }
        try? await group.shutdownGracefully()
        logger.info("stopped")
    }

    public var health: HealthReply { router.health() }
}

/// Answers a connection past the limit with one refusal frame as soon as it is active, then
/// closes it; reads nothing from it.
final class RefusingHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = Frame
    let refusal: Frame

    init(refusal: Frame) { self.refusal = refusal }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { refuse(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        refuse(context)
    }

    private var refused = false

    private func refuse(_ context: ChannelHandlerContext) {
        guard !refused else { return }
        refused = true
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(refusal)).whenComplete { _ in channel.close(promise: nil) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
}

/// The connections open now, to close them at shutdown.
final class OpenChannels: Sendable {
    let channels = Mutex<[ObjectIdentifier: any Channel]>([:])
}
