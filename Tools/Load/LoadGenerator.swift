import ArgumentParser
import Foundation
import Histogram
import LogClient
import LogFormat
import NIOCore
import NIOPosix
import Synchronization
import WireProtocol

/// `lodestone-load`: whole-system load over TCP against a running server.
///
/// P producers, each with its own connection and idempotent producer identity, append to
/// one topic with durable acks for a fixed time after a warm-up. Closed loop: each
/// producer sends one request holding one batch and waits for its ack before the next,
/// so the number of producers is the concurrency. `--batch-records 1` is the one record
/// per request case; more records per batch (and `--lz4`) is the batching case. Reports
/// events/s, MB/s of record payload (keys and values), and the ack latency of requests
/// (p50, p99, p99.9, max) from an HdrHistogram, as text and as one JSON line.
@main
struct LoadGenerator: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "lodestone-load", abstract: "Whole-system load over TCP: events/s, MB/s, ack latency.")

    @Option(help: "The server, HOST:PORT.") var server = "127.0.0.1:7400"
    @Option(help: "The auth token.") var token = ""
    @Option(help: "The topic (created when missing).") var topic = "load"
    @Option(help: "raw or flip (for a topic this creates).") var kind = "raw"
    @Option(help: "Partitions (for a topic this creates).") var partitions = 4
    @Option(help: "Concurrent producers, one connection each.") var producers = 32
    @Option(name: .customLong("batch-records"), help: "Records per request (one batch).") var batchRecords = 1
    @Option(name: .customLong("record-bytes"), help: "Bytes of key and value per record.") var recordBytes = 200
    @Flag(help: "Compress batches with LZ4.") var lz4 = false
    @Option(help: "Seconds of measured load.") var seconds = 10.0
    @Option(help: "Seconds of load before measuring.") var warmup = 2.0
    @Option(help: "A label for the JSON line.") var label = ""
    @Option(help: "Event loop threads of the generator.") var threads = 2

    func run() async throws {
        guard let colon = server.lastIndex(of: ":"), let port = Int(server[server.index(after: colon)...]) else {
            throw ValidationError("--server must be HOST:PORT")
        }
        let host = String(server[..<colon])
        guard let topicKind = ["raw": TopicInfo.Kind.raw, "flip": .flip][kind] else { throw ValidationError("--kind must be raw or flip") }
        guard producers >= 1, batchRecords >= 1, recordBytes >= 64, seconds > 0 else { throw ValidationError("counts must be positive; --record-bytes at least 64") }

        let admin = try await LodestoneConnection.connect(host: host, port: port, token: token, clientName: "lodestone-load")
        var info: TopicInfo
        do {
            guard case .topic(let existing) = try await admin.send(.describeTopic(topic)) else { throw ValidationError("describeTopic") }
            info = existing
        } catch ClientError.server(let error) where error.code == .notFound {
            guard case .topic(let created) = try await admin.send(.createTopic(TopicInfo(name: topic, partitionCount: UInt32(partitions), kind: topicKind))) else {
                throw ValidationError("createTopic")
            }
            info = created
        }
        await admin.close()

        let shared = Shared()
        let measureFrom = NIODeadline.now() + .milliseconds(Int64(warmup * 1000))
        let measureUntil = measureFrom + .milliseconds(Int64(seconds * 1000))
        let workload = Workload(info: info, batchRecords: batchRecords, recordBytes: recordBytes, compression: lz4 ? .lz4 : .none)
        let progress = isatty(STDERR_FILENO) != 0 ? Task { await reportProgress(shared) } : nil
        let group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, threads))
        var finished: [EventLoopFuture<Void>] = []
        for index in 0..<producers {
            let loop = group.next()
            let done = loop.makePromise(of: Void.self)
            let handler = ClosedLoopProducer(
                index: index, token: token, workload: workload, shared: shared,
                measureFrom: measureFrom, until: measureUntil, done: done)
            _ = try await ClientBootstrap(group: loop)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandlers([ByteToMessageHandler(FrameDecoder()), MessageToByteHandler(FrameEncoder()), handler])
                    }
                }
                .connect(host: host, port: port).get()
            finished.append(done.futureResult)
        }
        for future in finished { try await future.get() }
        progress?.cancel()
        try await group.shutdownGracefully()
        report(shared, workload: workload)
    }

    func report(_ shared: Shared, workload: Workload) {
        let (events, bytes, requests, histogram) = shared.snapshot()
        let eventsPerSecond = Double(events) / seconds
        let megabytesPerSecond = Double(bytes) / seconds / 1_000_000
        func micros(_ percentile: Double) -> UInt64 { histogram.valueAtPercentile(percentile) }
        print(String(format: "%@ %@ topic, %d producers, %d record(s)/request%@: %.0f events/s, %.1f MB/s, %d requests; ack latency p50 %d us, p99 %d us, p99.9 %d us, max %d us",
                     label.isEmpty ? "load:" : label + ":", workload.info.kind == .flip ? "flip" : "raw", producers, batchRecords, lz4 ? " (LZ4)" : "", eventsPerSecond, megabytesPerSecond, requests,
                     Int(micros(50)), Int(micros(99)), Int(micros(99.9)), Int(histogram.max)))
        let json: [(String, JSONValue)] = [
            ("label", .string(label)), ("kind", .string(workload.info.kind == .flip ? "flip" : "raw")), ("partitions", .integer(workload.info.partitionCount)), ("producers", .integer(producers)),
            ("batch_records", .integer(batchRecords)), ("record_bytes", .integer(recordBytes)), ("lz4", .bool(lz4)), ("seconds", .number(String(seconds))),
            ("events", .integer(events)), ("events_per_second", .integer(Int(eventsPerSecond))), ("mb_per_second", .number(String(format: "%.1f", megabytesPerSecond))),
            ("requests", .integer(requests)), ("p50_us", .integer(micros(50))), ("p99_us", .integer(micros(99))), ("p999_us", .integer(micros(99.9))), ("max_us", .integer(histogram.max)),
        ]
        print(JSONValue.object(json.map { (key: $0.0, value: $0.1) }).json)
    }

    func reportProgress(_ shared: Shared) async {
        var last = 0
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            let now = shared.acked.load(ordering: .relaxed)
            FileHandle.standardError.write(Data("\rload: \(now - last) events/s acked".utf8))
            last = now
        }
        FileHandle.standardError.write(Data("\n".utf8))
    }
}

/// One closed-loop producer, driven on its connection's event loop (no thread hop between
/// an ack and the next request, so the generator costs the machine as little as it can):
/// hello, init producer, then one append at a time until `until`.
final class ClosedLoopProducer: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = Frame
    typealias OutboundOut = Frame

    let index: Int
    let token: String
    let workload: Workload
    let shared: Shared
    let measureFrom: NIODeadline
    let until: NIODeadline
    let done: EventLoopPromise<Void>
    var source: Workload.Source?
    var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    var sentAt = NIODeadline.now()
    var inFlightRecords = 0
    var inFlightBytes = 0
    var events = 0
    var bytes = 0
    var requests = 0
    var nextId: UInt32 = 1
    var finished = false

    init(index: Int, token: String, workload: Workload, shared: Shared, measureFrom: NIODeadline, until: NIODeadline, done: EventLoopPromise<Void>) {
        self.index = index
        self.token = token
        self.workload = workload
        self.shared = shared
        self.measureFrom = measureFrom
        self.until = until
        self.done = done
    }

    func channelActive(context: ChannelHandlerContext) {
        send(.hello(HelloRequest(clientName: "lodestone-load-\(index)", token: token)), context: context)
    }

    func send(_ request: Request, context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(request.frame(requestId: nextId)), promise: nil)
        nextId &+= 1
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard let kind = MessageKind(rawValue: frame.kind & ~Frame.responseFlag) else { return fail(context, "a reply of unknown kind \(frame.kind)") }
        let reply: Reply
        do {
            switch try ResponsePayload.decode(kind: kind, payload: frame.payload) {
            case .success(let success): reply = success
            case .failure(let error): return fail(context, "\(kind): \(error)")
            }
        } catch {
            return fail(context, "\(kind): \(error)")
        }
        switch reply {
        case .hello:
            send(.initProducer(name: nil), context: context)
        case .producer(let id, let epoch):
            source = workload.source(producer: index, producerId: id, epoch: epoch)
            sendNext(context)
        case .append(let results):
            let now = NIODeadline.now()
            guard let result = results.first, result.error == .none, result.outcome == .committed else {
                return fail(context, "append: \(results)")
            }
            shared.acked.add(inFlightRecords, ordering: .relaxed)
            if sentAt >= measureFrom {
                events += inFlightRecords
                bytes += inFlightBytes
                requests += 1
                _ = histogram.record(UInt64(max(1, (now - sentAt).nanoseconds / 1000)))
            }
            if now >= until {
                shared.add(events: events, bytes: bytes, requests: requests, histogram: histogram)
                finish(.success(()))
                context.close(promise: nil)
            } else {
                sendNext(context)
            }
        default:
            fail(context, "unexpected reply \(reply)")
        }
    }

    func sendNext(_ context: ChannelHandlerContext) {
        let (partition, batch, records, payloadBytes) = source!.nextBatch()
        inFlightRecords = records
        inFlightBytes = payloadBytes
        sentAt = .now()
        send(.append(AppendRequest(topic: workload.info.name, partition: UInt32(partition), ack: .durable, batches: [batch])), context: context)
    }

    func fail(_ context: ChannelHandlerContext, _ why: String) {
        finish(.failure(ValidationError("producer \(index): \(why)")))
        context.close(promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) { fail(context, "\(error)") }

    func channelInactive(context: ChannelHandlerContext) { finish(.failure(ValidationError("producer \(index): the connection closed"))) }

    /// Completes `done` once; closing the channel runs `channelInactive` at once, so the
    /// first outcome must win.
    func finish(_ result: Result<Void, any Error>) {
        guard !finished else { return }
        finished = true
        done.completeWith(result)
    }
}

/// Counters every producer adds to.
final class Shared: Sendable {
    let acked = Atomic<Int>(0)
    let totals = Mutex<(events: Int, bytes: Int, requests: Int, histogram: Histogram<UInt64>)>(
        (0, 0, 0, Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)))

    func add(events: Int, bytes: Int, requests: Int, histogram: Histogram<UInt64>) {
        totals.withLock { totals in
            totals.events += events
            totals.bytes += bytes
            totals.requests += requests
            totals.histogram.add(histogram)
        }
    }

    func snapshot() -> (Int, Int, Int, Histogram<UInt64>) { totals.withLock { ($0.events, $0.bytes, $0.requests, $0.histogram) } }
}

/// What the producers send: records of about `recordBytes` (key and value together; MB/s
/// counts the bytes really sent), the same mix for every run. Raw values are JSON-like
/// text with a number and 64 random hex digits (telemetry compresses, but not to
/// nothing); flip values are flip events whose reason and actor pad them to size.
struct Workload: Sendable {
    let info: TopicInfo
    let batchRecords: Int
    let recordBytes: Int
    let compression: CompressionCodec

    func source(producer: Int, producerId: Int64, epoch: Int16) -> Source {
        Source(workload: self, producer: producer, producerId: producerId, epoch: epoch)
    }

    struct Source {
        let workload: Workload
        let producerId: Int64
        let epoch: Int16
        let partition: Int
        /// This producer's resources, all in its partition (so flip records go where they belong).
        let resources: [String]
        var sequence: Int32 = 0
        var counter: Int64 = 0
        var rawPool: [[UInt8]] = []
        let keys: [[UInt8]]

        init(workload: Workload, producer: Int, producerId: Int64, epoch: Int16) {
            self.workload = workload
            self.producerId = producerId
            self.epoch = epoch
            let count = Int(workload.info.partitionCount)
            partition = producer % count
            var names: [String] = []
            var candidate = 0
            while names.count < 16 {
                let name = "load/p\(producer)/r\(candidate)"
                if Partitioner.partition(forKey: Array(name.utf8), partitionCount: count) == producer % count { names.append(name) }
                candidate += 1
            }
            resources = names
            keys = names.map { Array($0.utf8) }
        }

        /// The next batch, its record count and the bytes of its keys and values.
        mutating func nextBatch() -> (partition: Int, batch: ByteBuffer, records: Int, payloadBytes: Int) {
            var records: [Record] = []
            var payloadBytes = 0
            records.reserveCapacity(workload.batchRecords)
            for index in 0..<workload.batchRecords {
                counter += 1
                let which = Int(counter) % resources.count
                let resource = resources[which]
                let key = keys[which]
                let value = workload.info.kind == .flip ? flipValue(resource: resource, keyBytes: key.count) : rawValue(keyBytes: key.count)
                records.append(Record(offsetDelta: Int32(index), key: key, value: value))
                payloadBytes += key.count + value.count
            }
            let batch = RecordBatch(
                attributes: BatchAttributes(compression: workload.compression), baseTimestamp: 0,
                producerId: producerId, producerEpoch: epoch, baseSequence: sequence, records: records)
            sequence = sequence &+ Int32(records.count)
            return (partition, ByteBuffer(bytes: batch.encoded()), records.count, payloadBytes)
        }

        /// Raw values come from a pool made once per producer (the generator should spend
        /// its CPU on sending, not on making text): 4,096 values, each with its own random
        /// digits, taken in turn (more than a batch holds, so no batch repeats a value).
        mutating func rawValue(keyBytes: Int) -> [UInt8] {
            if rawPool.isEmpty {
                let target = max(0, workload.recordBytes - keyBytes)
                for number in 0..<4096 {
                    var hex = ""
                    for _ in 0..<4 { hex += String(UInt64.random(in: .min ... .max), radix: 16).leftPadded(to: 16) }
                    let text = "{\"n\":\(number),\"state\":\"degraded\",\"sample\":\"\(hex)\",\"pad\":\""
                    let padded = text + String(repeating: "x", count: max(0, target - text.utf8.count - 2)) + "\"}"
                    rawPool.append(Array(padded.utf8.prefix(target)))
                }
            }
            return rawPool[Int(counter) % rawPool.count]
        }

        mutating func flipValue(resource: String, keyBytes: Int) -> [UInt8] {
            let up = counter % 2 == 0
            var event = FlipEvent(resource: resource, from: up ? "down" : "up", to: up ? "up" : "down", polarity: up ? 1 : -1,
                                  actor: "load", reason: "", epoch: 1, seq: counter, time: 1_764_000_000_000 + counter)
            // Pad with the reason, then the actor (each holds at most 128 bytes).
            let missing = max(0, workload.recordBytes - event.encodedValue().count - keyBytes)
            event.reason = String(repeating: "r", count: min(FlipEvent.textBytesMax, missing))
            let stillMissing = max(0, workload.recordBytes - event.encodedValue().count - keyBytes)
            event.actor += String(repeating: "a", count: min(FlipEvent.textBytesMax - event.actor.utf8.count, stillMissing))
            return event.encodedValue()
        }
    }
}

extension String {
    func leftPadded(to width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}
