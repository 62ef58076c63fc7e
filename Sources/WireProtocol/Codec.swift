import LogFormat
import NIOCore

/// Field encodings (Docs/protocol.md): integers big-endian; `string` = u16 length + UTF-8;
/// `bytes` = u32 length + bytes; `array` = u32 count + elements; `optional` = u8 0 or 1,
/// then the value when 1.
extension ByteBuffer {
    mutating func writeWireString(_ text: String) {
        let bytes = Array(text.utf8.prefix(WireLimits.stringBytesMax))
        writeInteger(UInt16(bytes.count))
        writeBytes(bytes)
    }

    mutating func readWireString(_ field: @autoclosure () -> String) throws(ProtocolError) -> String {
        guard let length = readInteger(as: UInt16.self) else { throw ProtocolError(.malformed, "\(field()): missing length") }
        guard let bytes = readBytes(length: Int(length)) else { throw ProtocolError(.malformed, "\(field()): \(length) bytes announced, \(readableBytes) present") }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw ProtocolError(.malformed, "\(field()) is not valid UTF-8") }
        return text
    }

    mutating func readWireInteger<T: FixedWidthInteger>(_: T.Type = T.self, _ field: @autoclosure () -> String) throws(ProtocolError) -> T {
        guard let value = readInteger(as: T.self) else { throw ProtocolError(.malformed, "\(field()): needs \(MemoryLayout<T>.size) bytes, \(readableBytes) present") }
        return value
    }

    mutating func writeWireBytes(_ bytes: ByteBuffer) {
        writeInteger(UInt32(bytes.readableBytes))
        var copy = bytes
        writeBuffer(&copy)
    }

    mutating func readWireBytes(_ field: @autoclosure () -> String) throws(ProtocolError) -> ByteBuffer {
        let length = try readWireInteger(UInt32.self, field())
        guard let slice = readSlice(length: Int(length)) else { throw ProtocolError(.malformed, "\(field()): \(length) bytes announced, \(readableBytes) present") }
        return slice
    }

    /// An array count, checked against what the rest of the payload can hold (each element
    /// is at least `elementBytesMin` bytes; `malformed` when it cannot) and against
    /// `countMax` (`overLimit`: `malformed` in a reply; `invalidArgument` for a request's
    /// count the protocol limits, as the frame itself is whole).
    mutating func readWireCount(_ field: @autoclosure () -> String, elementBytesMin: Int, countMax: Int, overLimit: ErrorCode = .malformed) throws(ProtocolError) -> Int {
        let count = Int(try readWireInteger(UInt32.self, field()))
        if count > countMax { throw ProtocolError(overLimit, "\(field()): \(count) elements exceed the limit of \(countMax)") }
        if count * elementBytesMin > readableBytes { throw ProtocolError(.malformed, "\(field()): \(count) elements cannot fit in the \(readableBytes) bytes left") }
        return count
    }
}

// MARK: Requests

extension Request {
    /// The request's payload.
    public func encodePayload() -> ByteBuffer {
        var buffer = ByteBuffer()
        switch self {
        case .hello(let hello):
            buffer.writeInteger(hello.minimumVersion)
            buffer.writeInteger(hello.maximumVersion)
            buffer.writeWireString(hello.clientName)
            buffer.writeWireString(hello.token)
        case .createTopic(let topic):
            topic.encode(into: &buffer)
        case .listTopics, .health:
            break
        case .describeTopic(let name):
            buffer.writeWireString(name)
        case .initProducer(let name):
            buffer.writeInteger(UInt8(name == nil ? 0 : 1))
            if let name { buffer.writeWireString(name) }
        case .append(let append):
            buffer.writeWireString(append.topic)
            buffer.writeInteger(append.partition)
            buffer.writeInteger(append.ack.rawValue)
            buffer.writeInteger(UInt32(append.batches.count))
            for batch in append.batches { buffer.writeWireBytes(batch) }
        case .fetch(let fetch):
            buffer.writeWireString(fetch.topic)
            buffer.writeInteger(fetch.partition)
            buffer.writeInteger(fetch.offset)
            buffer.writeInteger(fetch.maxBytes)
            buffer.writeInteger(fetch.maxWaitMilliseconds)
        case .listOffsets(let request):
            buffer.writeWireString(request.topic)
            buffer.writeInteger(request.partition)
            buffer.writeInteger(request.mode.rawValue)
            buffer.writeInteger(request.time)
        case .pauliz(let query):
            buffer.writeWireString(query.topic)
            buffer.writeInteger(query.windowMilliseconds)
            buffer.writeInteger(query.hopMilliseconds)
            var flags: UInt8 = 0
            if query.from != nil { flags |= 1 }
            if query.to != nil { flags |= 2 }
            if query.stormIntervalMilliseconds != nil { flags |= 4 }
            if query.stormEnter != nil { flags |= 8 }
            if query.stormExit != nil { flags |= 16 }
            buffer.writeInteger(flags)
            buffer.writeInteger(query.from ?? 0)
            buffer.writeInteger(query.to ?? 0)
            buffer.writeInteger(query.stormIntervalMilliseconds ?? 0)
            buffer.writeInteger(query.stormEnter ?? 0)
            buffer.writeInteger(query.stormExit ?? 0)
            switch query.filter {
            case .all:
                buffer.writeInteger(UInt8(0))
                buffer.writeWireString("")
            case .exact(let resource):
                buffer.writeInteger(UInt8(1))
                buffer.writeWireString(resource)
            case .prefix(let prefix):
                buffer.writeInteger(UInt8(2))
                buffer.writeWireString(prefix)
            }
        }
        return buffer
    }

    public func frame(requestId: UInt32) -> Frame {
        Frame(requestId: requestId, kind: kind.rawValue, payload: encodePayload())
    }

    /// Decodes a request frame's payload; every byte must be used.
    public static func decode(kind rawKind: UInt16, payload: ByteBuffer) throws(ProtocolError) -> Request {
        guard let kind = MessageKind(rawValue: rawKind) else { throw ProtocolError(.unknownRequest, "request kind \(rawKind) is not known") }
        var buffer = payload
        let request: Request
        switch kind {
        case .hello:
            request = .hello(HelloRequest(
                minimumVersion: try buffer.readWireInteger(UInt16.self, "hello.minimumVersion"),
                maximumVersion: try buffer.readWireInteger(UInt16.self, "hello.maximumVersion"),
                clientName: try buffer.readWireString("hello.clientName"),
                token: try buffer.readWireString("hello.token")))
        case .createTopic:
            request = .createTopic(try TopicInfo.decode(from: &buffer))
        case .listTopics:
            request = .listTopics
        case .health:
            request = .health
        case .describeTopic:
            request = .describeTopic(try buffer.readWireString("describeTopic.name"))
        case .initProducer:
            let present = try buffer.readWireInteger(UInt8.self, "initProducer.hasName")
            guard present <= 1 else { throw ProtocolError(.invalidArgument, "initProducer.hasName \(present) is not 0 or 1") }
            request = .initProducer(name: present == 1 ? try buffer.readWireString("initProducer.name") : nil)
        case .append:
            let topic = try buffer.readWireString("append.topic")
            let partition = try buffer.readWireInteger(UInt32.self, "append.partition")
            let rawAck = try buffer.readWireInteger(UInt8.self, "append.ack")
            guard let ack = AppendRequest.Ack(rawValue: rawAck) else { throw ProtocolError(.invalidArgument, "append.ack \(rawAck) is not 0, 1 or 2") }
            let count = try buffer.readWireCount("append.batches", elementBytesMin: 4, countMax: WireLimits.appendBatchCountMax, overLimit: .invalidArgument)
            var batches: [ByteBuffer] = []
            for index in 0..<count { batches.append(try buffer.readWireBytes("append.batches[\(index)]")) }
            request = .append(AppendRequest(topic: topic, partition: partition, ack: ack, batches: batches))
        case .fetch:
            request = .fetch(FetchRequest(
                topic: try buffer.readWireString("fetch.topic"), partition: try buffer.readWireInteger(UInt32.self, "fetch.partition"),
                offset: try buffer.readWireInteger(Int64.self, "fetch.offset"), maxBytes: try buffer.readWireInteger(UInt32.self, "fetch.maxBytes"),
                maxWaitMilliseconds: try buffer.readWireInteger(UInt32.self, "fetch.maxWaitMilliseconds")))
        case .listOffsets:
            let topic = try buffer.readWireString("listOffsets.topic")
            let partition = try buffer.readWireInteger(UInt32.self, "listOffsets.partition")
            let rawMode = try buffer.readWireInteger(UInt8.self, "listOffsets.mode")
            guard let mode = ListOffsetsRequest.Mode(rawValue: rawMode) else { throw ProtocolError(.invalidArgument, "listOffsets.mode \(rawMode) is not 0, 1 or 2") }
            request = .listOffsets(ListOffsetsRequest(topic: topic, partition: partition, mode: mode, time: try buffer.readWireInteger(Int64.self, "listOffsets.time")))
        case .pauliz:
            let topic = try buffer.readWireString("pauliz.topic")
            let window = try buffer.readWireInteger(Int64.self, "pauliz.window")
            let hop = try buffer.readWireInteger(Int64.self, "pauliz.hop")
            let flags = try buffer.readWireInteger(UInt8.self, "pauliz.flags")
            guard flags & ~0x1F == 0 else { throw ProtocolError(.invalidArgument, "pauliz.flags \(flags) sets bits above bit 4") }
            let from = try buffer.readWireInteger(Int64.self, "pauliz.from")
            let to = try buffer.readWireInteger(Int64.self, "pauliz.to")
            let interval = try buffer.readWireInteger(Int64.self, "pauliz.stormInterval")
            let enter = try buffer.readWireInteger(Int32.self, "pauliz.stormEnter")
            let exit = try buffer.readWireInteger(Int32.self, "pauliz.stormExit")
            let filterKind = try buffer.readWireInteger(UInt8.self, "pauliz.filter")
            let filterText = try buffer.readWireString("pauliz.filterText")
            let filter: PaulizRequest.Filter
            switch filterKind {
            case 0 where filterText.isEmpty: filter = .all
            case 1: filter = .exact(filterText)
            case 2: filter = .prefix(filterText)
            default: throw ProtocolError(.invalidArgument, "pauliz.filter \(filterKind) with \(filterText.utf8.count) bytes of text is not 0 (all, no text), 1 (resource) or 2 (prefix)")
            }
            request = .pauliz(PaulizRequest(
                topic: topic, windowMilliseconds: window, hopMilliseconds: hop, from: flags & 1 != 0 ? from : nil, to: flags & 2 != 0 ? to : nil,
                filter: filter, stormIntervalMilliseconds: flags & 4 != 0 ? interval : nil, stormEnter: flags & 8 != 0 ? enter : nil,
                stormExit: flags & 16 != 0 ? exit : nil))
        }
        if buffer.readableBytes != 0 { throw ProtocolError(.malformed, "\(buffer.readableBytes) bytes follow the \(kind) request") }
        return request
    }
}

extension TopicInfo {
    func encode(into buffer: inout ByteBuffer) {
        buffer.writeWireString(name)
        buffer.writeInteger(partitionCount)
        buffer.writeInteger(kind.rawValue)
        buffer.writeInteger(createdAt)
        buffer.writeInteger(UInt8(polarityMap == nil ? 0 : 1))
        if let polarityMap {
            buffer.writeInteger(UInt32(polarityMap.count))
            for (state, polarity) in polarityMap {
                buffer.writeWireString(state)
                buffer.writeInteger(polarity)
            }
        }
        buffer.writeInteger(stormIntervalMilliseconds)
        buffer.writeInteger(stormEnter)
        buffer.writeInteger(stormExit)
        buffer.writeInteger(UInt32(partitions.count))
        for partition in partitions {
            buffer.writeInteger(partition.start)
            buffer.writeInteger(partition.end)
        }
    }

    static func decode(from buffer: inout ByteBuffer) throws(ProtocolError) -> TopicInfo {
        let name = try buffer.readWireString("topic.name")
        let partitionCount = try buffer.readWireInteger(UInt32.self, "topic.partitionCount")
        let rawKind = try buffer.readWireInteger(UInt8.self, "topic.kind")
        guard let kind = Kind(rawValue: rawKind) else { throw ProtocolError(.invalidArgument, "topic.kind \(rawKind) is not 0 (raw) or 1 (flip)") }
        let createdAt = try buffer.readWireInteger(Int64.self, "topic.createdAt")
        let hasMap = try buffer.readWireInteger(UInt8.self, "topic.hasPolarityMap")
        guard hasMap <= 1 else { throw ProtocolError(.invalidArgument, "topic.hasPolarityMap \(hasMap) is not 0 or 1") }
        var polarityMap: [(state: String, polarity: Int8)]?
        if hasMap == 1 {
            let count = try buffer.readWireCount("topic.polarityMap", elementBytesMin: 3, countMax: WireLimits.polarityMapEntriesMax, overLimit: .invalidArgument)
            var entries: [(state: String, polarity: Int8)] = []
            for index in 0..<count {
                entries.append((try buffer.readWireString("topic.polarityMap[\(index)].state"), try buffer.readWireInteger(Int8.self, "topic.polarityMap[\(index)].polarity")))
            }
            polarityMap = entries
        }
        let interval = try buffer.readWireInteger(Int64.self, "topic.stormIntervalMilliseconds")
        let enter = try buffer.readWireInteger(UInt32.self, "topic.stormEnter")
        let exit = try buffer.readWireInteger(UInt32.self, "topic.stormExit")
        let count = try buffer.readWireCount("topic.partitions", elementBytesMin: 16, countMax: Limits.topicPartitionCountMax, overLimit: .invalidArgument)
        var partitions: [PartitionOffsets] = []
        for index in 0..<count {
            partitions.append(PartitionOffsets(start: try buffer.readWireInteger(Int64.self, "topic.partitions[\(index)].start"), end: try buffer.readWireInteger(Int64.self, "topic.partitions[\(index)].end")))
        }
        return TopicInfo(name: name, partitionCount: partitionCount, kind: kind, createdAt: createdAt, polarityMap: polarityMap,
                         stormIntervalMilliseconds: interval, stormEnter: enter, stormExit: exit, partitions: partitions)
    }
}

// MARK: Replies

/// A response payload: `u16 error`; for an error, `string message` and nothing else; for
/// success, the reply's body.
public enum ResponsePayload {
    public static func encode(_ result: Result<Reply, ProtocolError>) -> ByteBuffer {
        var buffer = ByteBuffer()
        switch result {
        case .failure(let error):
            buffer.writeInteger(error.code.rawValue)
            buffer.writeWireString(error.message)
        case .success(let reply):
            buffer.writeInteger(ErrorCode.none.rawValue)
            reply.encodeBody(into: &buffer)
        }
        return buffer
    }

    public static func frame(requestId: UInt32, kind: MessageKind, _ result: Result<Reply, ProtocolError>) -> Frame {
        frame(requestId: requestId, rawKind: kind.rawValue, result)
    }

    /// A response to a request whose kind may be unknown (or 0: no request could be read).
    public static func frame(requestId: UInt32, rawKind: UInt16, _ result: Result<Reply, ProtocolError>) -> Frame {
        Frame(requestId: requestId, kind: rawKind | Frame.responseFlag, payload: encode(result))
    }

    /// The frames that answer a request: one, or for a Pauli-Z answer larger than a frame
    /// several, each a part of it (`PaulizReply.parts`).
    public static func frames(requestId: UInt32, kind: MessageKind, _ result: Result<Reply, ProtocolError>) -> [Frame] {
        guard case .success(.pauliz(let reply)) = result else { return [frame(requestId: requestId, kind: kind, result)] }
        return reply.parts(bytesMax: WireLimits.paulizPartBytesMax).map { frame(requestId: requestId, kind: kind, .success(.pauliz($0))) }
    }

    /// Decodes a response to a request of `kind`.
    public static func decode(kind: MessageKind, payload: ByteBuffer) throws(ProtocolError) -> Result<Reply, ProtocolError> {
        var buffer = payload
        let rawCode = try buffer.readWireInteger(UInt16.self, "response.error")
        guard let code = ErrorCode(rawValue: rawCode) else { throw ProtocolError(.malformed, "response error code \(rawCode) is not known") }
        if code != .none {
            let message = try buffer.readWireString("response.message")
            return .failure(ProtocolError(code, message))
        }
        let reply = try Reply.decodeBody(kind: kind, from: &buffer)
        if buffer.readableBytes != 0 { throw ProtocolError(.malformed, "\(buffer.readableBytes) bytes follow the \(kind) reply") }
        return .success(reply)
    }
}

extension Reply {
    func encodeBody(into buffer: inout ByteBuffer) {
        switch self {
        case .hello(let hello):
            buffer.writeInteger(hello.version)
            buffer.writeWireString(hello.serverName)
            buffer.writeInteger(hello.frameBytesMax)
            buffer.writeInteger(hello.inFlightRequestsMax)
        case .topic(let topic):
            topic.encode(into: &buffer)
        case .topics(let topics):
            buffer.writeInteger(UInt32(topics.count))
            for topic in topics { topic.encode(into: &buffer) }
        case .producer(let producerId, let epoch):
            buffer.writeInteger(producerId)
            buffer.writeInteger(epoch)
        case .append(let results):
            buffer.writeInteger(UInt32(results.count))
            for result in results {
                buffer.writeInteger(result.error.rawValue)
                buffer.writeWireString(result.message)
                buffer.writeInteger(result.outcome.rawValue)
                buffer.writeInteger(result.baseOffset)
                buffer.writeInteger(result.lastOffset)
                buffer.writeInteger(result.appendTime)
                buffer.writeInteger(UInt32(result.refusals.count))
                for refusal in result.refusals {
                    buffer.writeInteger(UInt32(refusal.index))
                    buffer.writeInteger(refusal.reason.rawValue)
                    buffer.writeWireString(refusal.message)
                }
            }
        case .fetch(let fetch):
            buffer.writeInteger(fetch.logStart)
            buffer.writeInteger(fetch.durableEnd)
            buffer.writeInteger(fetch.nextOffset)
            buffer.writeWireBytes(fetch.records)
        case .listOffsets(let reply):
            buffer.writeInteger(reply.offset)
            buffer.writeInteger(reply.start)
            buffer.writeInteger(reply.end)
        case .health(let health):
            buffer.writeWireString(health.status)
            buffer.writeInteger(UInt32(health.counters.count))
            for counter in health.counters {
                buffer.writeWireString(counter.name)
                buffer.writeInteger(counter.value)
            }
        case .pauliz(let reply):
            buffer.writeInteger(UInt8(reply.horizon == nil ? 0 : 1) | UInt8(reply.continued ? 2 : 0))
            buffer.writeInteger(reply.horizon ?? 0)
            buffer.writeInteger(reply.eventsRead)
            buffer.writeInteger(UInt32(reply.rows.count))
            for row in reply.rows {
                buffer.writeWireString(row.resource)
                buffer.writeInteger(row.windowStart)
                for figure in row.figures { buffer.writeInteger(figure) }
            }
            buffer.writeInteger(UInt32(reply.episodes.count))
            for episode in reply.episodes {
                buffer.writeWireString(episode.resource)
                buffer.writeInteger(episode.start)
                buffer.writeInteger(UInt8(episode.end == nil ? 0 : 1))
                buffer.writeInteger(episode.end ?? 0)
                buffer.writeInteger(episode.flips)
                buffer.writeInteger(episode.peak)
            }
        }
    }

    static func decodeBody(kind: MessageKind, from buffer: inout ByteBuffer) throws(ProtocolError) -> Reply {
        switch kind {
        case .hello:
            return .hello(HelloReply(
                version: try buffer.readWireInteger(UInt16.self, "hello.version"), serverName: try buffer.readWireString("hello.serverName"),
                frameBytesMax: try buffer.readWireInteger(UInt32.self, "hello.frameBytesMax"),
                inFlightRequestsMax: try buffer.readWireInteger(UInt32.self, "hello.inFlightRequestsMax")))
        case .createTopic, .describeTopic:
            return .topic(try TopicInfo.decode(from: &buffer))
        case .listTopics:
            // The smallest description: empty name (2), partition count (4), kind (1), creation time (8),
            // no map (1), storm parameters (16), no partitions (4).
            let count = try buffer.readWireCount("topics", elementBytesMin: 36, countMax: Limits.storeTopicCountMax)
            var topics: [TopicInfo] = []
            for _ in 0..<count { topics.append(try TopicInfo.decode(from: &buffer)) }
            return .topics(topics)
        case .initProducer:
            return .producer(producerId: try buffer.readWireInteger(Int64.self, "producer.id"), epoch: try buffer.readWireInteger(Int16.self, "producer.epoch"))
        case .append:
            let count = try buffer.readWireCount("append.results", elementBytesMin: 33, countMax: WireLimits.appendBatchCountMax)
            var results: [BatchResult] = []
            for index in 0..<count {
                let rawError = try buffer.readWireInteger(UInt16.self, "results[\(index)].error")
                guard let error = ErrorCode(rawValue: rawError) else { throw ProtocolError(.malformed, "results[\(index)].error \(rawError) is not known") }
                let message = try buffer.readWireString("results[\(index)].message")
                let rawOutcome = try buffer.readWireInteger(UInt8.self, "results[\(index)].outcome")
                guard let outcome = BatchResult.Outcome(rawValue: rawOutcome) else { throw ProtocolError(.malformed, "results[\(index)].outcome \(rawOutcome) is not known") }
                var result = BatchResult(
                    error: error, message: message, outcome: outcome, baseOffset: try buffer.readWireInteger(Int64.self, "baseOffset"),
                    lastOffset: try buffer.readWireInteger(Int64.self, "lastOffset"), appendTime: try buffer.readWireInteger(Int64.self, "appendTime"))
                let refusalCount = try buffer.readWireCount("results[\(index)].refusals", elementBytesMin: 7, countMax: Limits.batchRecordCountMax)
                for _ in 0..<refusalCount {
                    let recordIndex = Int(try buffer.readWireInteger(UInt32.self, "refusal.index"))
                    let rawReason = try buffer.readWireInteger(UInt8.self, "refusal.reason")
                    guard let reason = RecordRefusal.Reason(rawValue: rawReason) else { throw ProtocolError(.malformed, "refusal reason \(rawReason) is not known") }
                    result.refusals.append(RecordRefusal(index: recordIndex, reason: reason, message: try buffer.readWireString("refusal.message")))
                }
                results.append(result)
            }
            return .append(results)
        case .fetch:
            return .fetch(FetchReply(
                logStart: try buffer.readWireInteger(Int64.self, "fetch.logStart"), durableEnd: try buffer.readWireInteger(Int64.self, "fetch.durableEnd"),
                nextOffset: try buffer.readWireInteger(Int64.self, "fetch.nextOffset"), records: try buffer.readWireBytes("fetch.records")))
        case .listOffsets:
            return .listOffsets(ListOffsetsReply(
                offset: try buffer.readWireInteger(Int64.self, "offset"), start: try buffer.readWireInteger(Int64.self, "start"),
                end: try buffer.readWireInteger(Int64.self, "end")))
        case .health:
            let status = try buffer.readWireString("health.status")
            let count = try buffer.readWireCount("health.counters", elementBytesMin: 10, countMax: 100_000)
            var counters: [(name: String, value: Int64)] = []
            for _ in 0..<count { counters.append((try buffer.readWireString("counter.name"), try buffer.readWireInteger(Int64.self, "counter.value"))) }
            return .health(HealthReply(status: status, counters: counters))
        case .pauliz:
            let flags = try buffer.readWireInteger(UInt8.self, "pauliz.flags")
            guard flags & ~0x03 == 0 else { throw ProtocolError(.malformed, "pauliz.flags \(flags) has unknown bits") }
            let horizon = try buffer.readWireInteger(Int64.self, "pauliz.horizon")
            let eventsRead = try buffer.readWireInteger(Int64.self, "pauliz.eventsRead")
            let rowCount = try buffer.readWireCount("pauliz.rows", elementBytesMin: 2 + 8 * (1 + PaulizReply.Row.figureCount), countMax: Int(UInt32.max))
            var rows: [PaulizReply.Row] = []
            rows.reserveCapacity(rowCount)
            for _ in 0..<rowCount {
                let resource = try buffer.readWireString("row.resource")
                let start = try buffer.readWireInteger(Int64.self, "row.windowStart")
                var figures: [Int64] = []
                for _ in 0..<PaulizReply.Row.figureCount { figures.append(try buffer.readWireInteger(Int64.self, "row.figure")) }
                rows.append(PaulizReply.Row(resource: resource, windowStart: start, figures: figures))
            }
            let episodeCount = try buffer.readWireCount("pauliz.episodes", elementBytesMin: 35, countMax: Int(UInt32.max))
            var episodes: [PaulizReply.Episode] = []
            for _ in 0..<episodeCount {
                let resource = try buffer.readWireString("episode.resource")
                let start = try buffer.readWireInteger(Int64.self, "episode.start")
                let hasEnd = try buffer.readWireInteger(UInt8.self, "episode.hasEnd")
                guard hasEnd <= 1 else { throw ProtocolError(.malformed, "episode.hasEnd must be 0 or 1") }
                let end = try buffer.readWireInteger(Int64.self, "episode.end")
                episodes.append(PaulizReply.Episode(
                    resource: resource, start: start, end: hasEnd == 1 ? end : nil, flips: try buffer.readWireInteger(Int64.self, "episode.flips"),
                    peak: try buffer.readWireInteger(Int64.self, "episode.peak")))
            }
            return .pauliz(PaulizReply(horizon: flags & 1 == 1 ? horizon : nil, eventsRead: eventsRead, rows: rows, episodes: episodes, continued: flags & 2 == 2))
        }
    }
}
