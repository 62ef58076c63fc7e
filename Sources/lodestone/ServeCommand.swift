import ArgumentParser
@preconcurrency import Dispatch
import Foundation
import LogFormat
import LogIO
import LogServer
import LogStorage
import Logging
import Synchronization

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the server.",
        discussion: """
            Listens on loopback without authentication by default. Listening on any other \
            address needs --auth-file (a token file) or --insecure, which accepts every \
            client with every right; without either, serve exits with status 2. SIGTERM \
            and SIGINT shut down gracefully: no new connections, queued appends finished \
            and answered, clean-shutdown records written; a second signal exits at once \
            (status 130). Prints {"listening": HOST:PORT, "data": DIR} on stdout when ready.
            """)

    @Option(help: "The data directory.")
    var data = "./lodestone-data"

    @Option(help: "Address to listen on, HOST:PORT.")
    var listen = "127.0.0.1:7400"

    @Option(name: .customLong("metrics-listen"), help: "Address of the metrics endpoint, HOST:PORT (checked now; this version serves no metrics yet: lodestone health has the counters).")
    var metricsListen = "127.0.0.1:7401"

    @Option(name: .customLong("auth-file"), help: "Token file: {\"tokens\": [{\"name\", \"token\", \"scopes\": [{\"prefix\", \"rights\"}]}]}.")
    var authFile: String?

    @Flag(help: "Listen on a non-loopback address without authentication: every client gets every right.")
    var insecure = false

    @Option(help: "Most threads of the writers' pool (writes and fsyncs only: one per partition writing now, up to this many).")
    var writerThreads = 64

    @Option(help: "Threads of the query pool (fetches, offsets by time, Pauli-Z answers), at a lower priority than writers.")
    var queryThreads = 2

    @Option(help: "Requests that may wait for a query thread; past it they are refused as overloaded.")
    var queryQueue = 64

    @Option(help: "Network event loop threads.")
    var eventLoopThreads = 2

    func validate() throws {
        guard (1...1024).contains(writerThreads) else { throw ValidationError("--writer-threads must be 1 to 1024") }
        guard (1...64).contains(queryThreads) else { throw ValidationError("--query-threads must be 1 to 64") }
        guard (0...65_536).contains(queryQueue) else { throw ValidationError("--query-queue must be 0 to 65536") }
        guard (1...64).contains(eventLoopThreads) else { throw ValidationError("--event-loop-threads must be 1 to 64") }
    }

    func run() async throws {
        try await reporting("serve") {
            var logger = Logger(label: "lodestone")
            logger.logLevel = .info
            let (host, port) = try parseAddress(listen, option: "--listen")
            if !isLoopback(host) && authFile == nil && !insecure {
                throw CommandFailure("listening on \(host) reaches beyond this machine: give --auth-file with tokens, or --insecure to let anyone in with every right", status: 2)
            }
            let tokens: TokenFile?
            do {
                tokens = try authFile.map { try TokenFile.load(path: $0) }
            } catch {
                throw CommandFailure("\(error)", status: 2)
            }
            if insecure && tokens == nil && !isLoopback(host) {
                logger.warning("--insecure: no authentication on a non-loopback address; every client has every right")
            }
            var configuration = ServerConfiguration()
            configuration.host = host
            configuration.port = port
            configuration.tokens = tokens
            configuration.eventLoopThreads = eventLoopThreads
            configuration.queryThreads = queryThreads
            configuration.queryQueuedMax = queryQueue
            raiseOpenFileLimit(needed: UInt64(configuration.connectionsMax) + 1024, logger: logger)
            // Checked now so that a typo fails today, not when the endpoint arrives.
            _ = try parseAddress(metricsListen, option: "--metrics-listen")
            let pool = IOThreadPool(writersMax: writerThreads)
            let store: LogStore
            do {
                store = try LogStore.open(directory: data, environment: StorageEnvironment(fileIO: PosixFileIO(), executor: pool, logger: logger))
            } catch {
                pool.shutdown()
                throw CommandFailure("cannot open \(data): \(error)")
            }
            let server: LodestoneServer
            do {
                server = try await LodestoneServer.start(configuration: configuration, store: store, writers: pool, logger: logger)
            } catch {
                try? await store.close()
                pool.shutdown()
                throw CommandFailure("cannot listen on \(listen): \(error)")
            }
            // One line on stdout once clients can connect: where (the real port, when
            // --listen asked for port 0) and on which data directory.
            let listening = "\(host.contains(":") ? "[\(host)]" : host):\(server.localAddress.port ?? port)"
            writeAll(jsonLine([("listening", .string(listening)), ("data", .string(data))]) + "\n", to: STDOUT_FILENO)
            await waitForTermination()
            await server.shutdown()
            pool.shutdown()
        }
    }
}

/// Returns once SIGTERM or SIGINT arrives. A second signal during the shutdown ends the
/// process at once (exit status 130) for an operator who cannot wait.
func waitForTermination() async {
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        let queue = DispatchQueue(label: "lodestone.signals")
        let signals = Mutex(0)
        var sources: [any DispatchSourceSignal] = []
        for signalNumber in [SIGTERM, SIGINT] {
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: queue)
            source.setEventHandler {
                let count = signals.withLock { count in
                    count += 1
                    return count
                }
                if count == 1 { continuation.resume() } else { exit(130) }
            }
            source.resume()
            sources.append(source)
        }
        signalSources = sources
    }
}

/// The signal sources, kept for the life of the process.
nonisolated(unsafe) var signalSources: [any DispatchSourceSignal] = []

/// Raises the soft limit on open files to the hard limit, and says so when even that is
/// below what the connection limit needs (each connection is a file descriptor, as is
/// every open segment).
func raiseOpenFileLimit(needed: UInt64, logger: Logger) {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
    let before = limit.rlim_cur
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) != 0 { limit.rlim_cur = before }
    }
    logger.info("open files limit", metadata: ["soft": "\(limit.rlim_cur)", "raisedFrom": "\(before)", "hard": "\(limit.rlim_max)"])
    if UInt64(limit.rlim_cur) < needed {
        logger.warning("the open files limit is below what the connection limit needs; raise the hard limit (ulimit -Hn) or expect refused connections",
                       metadata: ["limit": "\(limit.rlim_cur)", "needed": "\(needed)"])
    }
}
