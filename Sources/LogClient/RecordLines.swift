import Foundation
import LogFormat
import WireProtocol

/// The JSON lines of `lodestone produce` and `lodestone consume` (Docs/design.md,
/// "The produce / consume contract"), kept here rather than in the command so that tests
/// and other tools read and write exactly the same lines.
public enum RecordLines {
    /// The keys of a raw record line.
    public static let rawKeys = ["resource", "value", "value_base64", "headers", "time", "partition"]
    /// The header that holds a raw record's `time`.
    public static let timeHeader = "time"
    /// Longest input line read; a longer one is invalid (no record that long fits a batch).
    public static let lineBytesMax = Limits.batchBytesMax

    /// Reads one input line as a record for a topic of `kind`. The error is the reason the
    /// line is `invalid`.
    public static func record(from line: [UInt8], kind: TopicInfo.Kind) throws(RecordLineError) -> ProducerRecord {
        if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { throw RecordLineError("a blank line holds no record") }
        let value: JSONValue
        do {
            value = try StrictJSON.parse(line)
        } catch {
            throw RecordLineError("not JSON: \(error)")
        }
        switch kind {
        case .flip:
            do {
                let event = try FlipEvent.fromJSON(value)
                return ProducerRecord(key: event.key, value: event.encodedValue())
            } catch {
                throw RecordLineError("\(error)")
            }
        case .raw:
            return try rawRecord(from: value)
        }
    }

    static func rawRecord(from value: JSONValue) throws(RecordLineError) -> ProducerRecord {
        guard case .object(let pairs) = value else { throw RecordLineError("a record must be a JSON object, got \(value.typeName)") }
        var fields: [String: JSONValue] = [:]
        for (key, value) in pairs {
            guard rawKeys.contains(key) else {
                throw RecordLineError("\"\(key)\" is not a field of a raw record (fields: \(rawKeys.joined(separator: ", ")))")
            }
            fields[key] = value
        }
        guard case .string(let resource)? = fields["resource"] else {
            throw RecordLineError(fields["resource"] == nil ? "resource is required" : "resource must be a string")
        }
        guard !resource.isEmpty, resource.utf8.count <= Limits.recordKeyBytesMax else {
            throw RecordLineError("resource must be 1 to \(Limits.recordKeyBytesMax) bytes")
        }
        var recordValue: [UInt8]?
        switch (fields["value"], fields["value_base64"]) {
        case (nil, nil): throw RecordLineError("value (or value_base64) is required; null stores a record without a value")
        case (_?, _?): throw RecordLineError("give value or value_base64, not both")
        case (.string(let text)?, nil): recordValue = Array(text.utf8)
        case (.null?, nil), (nil, .null?): recordValue = nil
        case (nil, .string(let text)?):
            guard let data = Data(base64Encoded: text) else { throw RecordLineError("value_base64 is not base64") }
            recordValue = Array(data)
        case (let other?, nil): throw RecordLineError("value must be a string or null, got \(other.typeName)")
        case (nil, let other?): throw RecordLineError("value_base64 must be a string or null, got \(other.typeName)")
        }
        var headers: [RecordHeader] = []
        switch fields["headers"] {
        case nil, .null?: break
        case .object(let pairs)?:
            guard pairs.count < Limits.recordHeaderCountMax else { throw RecordLineError("at most \(Limits.recordHeaderCountMax - 1) headers") }
            for (key, value) in pairs {
                guard key != timeHeader else { throw RecordLineError("the header \"time\" is the record's time: give it as the time field") }
                guard case .string(let text) = value else { throw RecordLineError("header \"\(key)\" must be a string, got \(value.typeName)") }
                headers.append(RecordHeader(key: key, value: Array(text.utf8)))
            }
        case let other?: throw RecordLineError("headers must be an object of strings, got \(other.typeName)")
        }
        if let time = fields["time"], time != .null {
            guard let milliseconds = time.integer else { throw RecordLineError("time must be an integer (milliseconds since the epoch)") }
            headers.append(RecordHeader(key: timeHeader, value: Array(String(milliseconds).utf8)))
        }
        var partition: Int?
        if let asked = fields["partition"], asked != .null {
            guard let number = asked.integer, number >= 0, number < Int64(Limits.topicPartitionCountMax) else {
                throw RecordLineError("partition must be an integer from 0")
            }
            partition = Int(number)
        }
        return ProducerRecord(key: Array(resource.utf8), value: recordValue, headers: headers, partition: partition)
    }

    /// The acknowledgement line for input line `line`.
    public static func acknowledgement(line: Int, outcome: RecordOutcome) -> String {
        var pairs: [(key: String, value: JSONValue)] = [("line", .integer(line)), ("outcome", .string(outcome.name))]
        switch outcome {
        case .committed(let partition, let offset), .duplicate(let partition, let offset):
            pairs += [("partition", .integer(partition)), ("offset", .integer(offset))]
        case .sent(let partition):
            pairs += [("partition", .integer(partition)), ("offset", .null)]
        case .invalid(let reason), .fenced(let reason), .replayed(let reason), .outOfOrder(let reason), .refused(let reason),
             .overloaded(let reason), .failed(let reason):
            pairs += [("partition", .null), ("offset", .null), ("error", .string(reason))]
        }
        return JSONValue.object(pairs).json
    }

    /// The output line of one consumed record: its fields, then topic, partition, offset and
    /// append_time. Flip events print every field of spec section 1 with the polarity
    /// resolved through `polarityMap`; a record that does not decode as one (none should)
    /// prints in the raw form with `"error"` saying why.
    public static func line(for record: ConsumedRecord, topic: String, kind: TopicInfo.Kind, polarityMap: [String: Int8]?) -> String {
        var pairs: [(key: String, value: JSONValue)] = []
        if kind == .flip {
            do {
                let event = try FlipEvent.decode(key: record.key, value: record.value)
                pairs = [
                    ("resource", .string(event.resource)), ("from", .string(event.from)), ("to", .string(event.to)),
                    ("polarity", .integer(event.resolvedPolarity(map: polarityMap))), ("actor", .string(event.actor)),
                    ("reason", .string(event.reason)), ("epoch", .integer(event.epoch)), ("seq", .integer(event.seq)), ("time", .integer(event.time)),
                ]
            } catch {
                pairs = rawFields(of: record) + [("error", .string("not a flip event: \(error)"))]
            }
        } else {
            pairs = rawFields(of: record)
        }
        pairs += [("topic", .string(topic)), ("partition", .integer(record.partition)), ("offset", .integer(record.offset)), ("append_time", .integer(record.appendTime))]
        return JSONValue.object(pairs).json
    }

    static func rawFields(of record: ConsumedRecord) -> [(key: String, value: JSONValue)] {
        var pairs: [(key: String, value: JSONValue)] = [("resource", text(record.key))]
        if let value = record.value, String(validating: value, as: UTF8.self) == nil {
            pairs.append(("value_base64", .string(Data(value).base64EncodedString())))
        } else {
            pairs.append(("value", text(record.value)))
        }
        var headers: [(key: String, value: JSONValue)] = []
        var time: JSONValue?
        for header in record.headers {
            if header.key == timeHeader, time == nil, let bytes = header.value, let milliseconds = Int64(String(decoding: bytes, as: UTF8.self)) {
                time = .integer(milliseconds)
            } else {
                headers.append((header.key, text(header.value)))
            }
        }
        if !headers.isEmpty { pairs.append(("headers", .object(headers))) }
        if let time { pairs.append(("time", time)) }
        return pairs
    }

    /// Bytes as a JSON string (invalid UTF-8 repaired, for keys and headers), or null.
    static func text(_ bytes: [UInt8]?) -> JSONValue {
        bytes.map { .string(String(decoding: $0, as: UTF8.self)) } ?? .null
    }
}

/// Why an input line is `invalid`.
public struct RecordLineError: Error, Equatable, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
