/// One flip event (Docs/spec/pauli-z.md, section 1): a resource's state changed (or
/// was read) from `from` to `to`, as its emitter saw it.
///
/// In a flip topic a flip event is one record: the record key is the resource (UTF-8), the
/// value is the binary encoding below. `from`, `actor` and `reason` read as "" when absent,
/// so absent and empty are the same for them; `polarity` keeps absent apart from 0 (absent
/// means "the topic's polarity map decides").
///
/// Value layout, version 1 (Docs/format.md has the table):
///
///     u8       version = 1
///     u8       flags: bit 0 = polarity present; bits 1 to 7 zero
///     i8       polarity: -1, 0 or 1 when present; 0 when absent
///     uvarint  epoch   (0 to 2^53-1)
///     uvarint  seq     (0 to 2^53-1)
///     varlong  time    (zigzag; -(2^53-1) to 2^53-1)
///     uvarint length, bytes: from, then to, then actor, then reason (UTF-8)
///
/// where `uvarint` is unsigned LEB128 and `varlong` Kafka's zigzag varlong.
public struct FlipEvent: Equatable, Hashable, Sendable {
    public var resource: String
    public var from: String
    public var to: String
    public var polarity: Int8?
    public var actor: String
    public var reason: String
    public var epoch: Int64
    public var seq: Int64
    public var time: Int64

    public init(
        resource: String, from: String = "", to: String, polarity: Int8? = nil, actor: String = "", reason: String = "",
        epoch: Int64, seq: Int64, time: Int64
    ) {
        self.resource = resource
        self.from = from
        self.to = to
        self.polarity = polarity
        self.actor = actor
        self.reason = reason
        self.epoch = epoch
        self.seq = seq
        self.time = time
    }

    public static let version: UInt8 = 1
    public static let integerMax: Int64 = (1 << 53) - 1
    public static let resourceBytesMax = 256
    public static let stateBytesMax = 64
    public static let textBytesMax = 128

    /// The polarity readers see: the event's own, else the topic's map for `to`, else 0.
    public func resolvedPolarity(map: [String: Int8]?) -> Int8 {
        polarity ?? map?[to] ?? 0
    }

    // MARK: Rules

    /// Checks every field rule of spec section 1; the error names the field.
    public func validate() throws(FlipEventError) {
        let resourceBytes = resource.utf8.count
        if resourceBytes < 1 || resourceBytes > Self.resourceBytesMax {
            throw FlipEventError(field: "resource", "must be 1 to \(Self.resourceBytesMax) bytes of UTF-8, got \(resourceBytes)")
        }
        if resource.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
            throw FlipEventError(field: "resource", "must not contain control characters")
        }
        if from.utf8.count > Self.stateBytesMax { throw FlipEventError(field: "from", "must be at most \(Self.stateBytesMax) bytes, got \(from.utf8.count)") }
        let toBytes = to.utf8.count
        if toBytes < 1 || toBytes > Self.stateBytesMax { throw FlipEventError(field: "to", "must be 1 to \(Self.stateBytesMax) bytes, got \(toBytes)") }
        if let polarity, !(-1...1).contains(polarity) { throw FlipEventError(field: "polarity", "must be -1, 0 or 1, got \(polarity)") }
        if actor.utf8.count > Self.textBytesMax { throw FlipEventError(field: "actor", "must be at most \(Self.textBytesMax) bytes, got \(actor.utf8.count)") }
        if reason.utf8.count > Self.textBytesMax { throw FlipEventError(field: "reason", "must be at most \(Self.textBytesMax) bytes, got \(reason.utf8.count)") }
        if !(0...Self.integerMax).contains(epoch) { throw FlipEventError(field: "epoch", "must be 0 to 2^53-1, got \(epoch)") }
        if !(0...Self.integerMax).contains(seq) { throw FlipEventError(field: "seq", "must be 0 to 2^53-1, got \(seq)") }
        if !(-Self.integerMax...Self.integerMax).contains(time) { throw FlipEventError(field: "time", "must be -(2^53-1) to 2^53-1, got \(time)") }
    }

    // MARK: Binary

    /// The record key: the resource's UTF-8 bytes.
    public var key: [UInt8] { Array(resource.utf8) }

    /// The record value (the event must be valid).
    public func encodedValue() -> [UInt8] {
        var bytes: [UInt8] = [Self.version, polarity == nil ? 0 : 1, UInt8(bitPattern: polarity ?? 0)]
        bytes.reserveCapacity(24 + from.utf8.count + to.utf8.count + actor.utf8.count + reason.utf8.count)
        ByteWriter.writeUnsignedVarint(UInt64(epoch), to: &bytes)
        ByteWriter.writeUnsignedVarint(UInt64(seq), to: &bytes)
        ByteWriter.writeVarint(time, to: &bytes)
        for text in [from, to, actor, reason] {
            ByteWriter.writeUnsignedVarint(UInt64(text.utf8.count), to: &bytes)
            bytes.append(contentsOf: text.utf8)
        }
        return bytes
    }

    /// Decodes a record's key and value, and checks every field rule.
    public static func decode(key: [UInt8]?, value: [UInt8]?) throws(FlipEventError) -> FlipEvent {
        guard let key else { throw FlipEventError(field: "resource", "is missing: the record has no key") }
        guard let resource = String(validating: key, as: UTF8.self) else { throw FlipEventError(field: "resource", "is not valid UTF-8") }
        guard let value else { throw FlipEventError(field: "value", "is missing: the record has no value") }
        let event = try withBytes(value) { (raw) throws(FlipEventError) -> FlipEvent in
            var cursor = ByteCursor(raw, context: "flip event")
            do {
                let version = try cursor.readUInt8("version")
                if version != Self.version { throw FlipEventError(field: "value", "has encoding version \(version), expected \(Self.version)") }
                let flags = try cursor.readUInt8("flags")
                if flags & ~1 != 0 { throw FlipEventError(field: "value", "has unknown flags \(flags)") }
                let polarityByte = Int8(bitPattern: try cursor.readUInt8("polarity"))
                if flags & 1 == 0 && polarityByte != 0 { throw FlipEventError(field: "polarity", "is marked absent but holds \(polarityByte)") }
                let epoch = try cursor.readUnsignedVarlong("epoch")
                let seq = try cursor.readUnsignedVarlong("seq")
                let time = try cursor.readVarlong("time")
                var texts: [String] = []
                for field in ["from", "to", "actor", "reason"] {
                    let length = Int(try cursor.readUnsignedVarint(field))
                    guard let text = String(validating: try cursor.readSlice(length, field), as: UTF8.self) else {
                        throw FlipEventError(field: field, "is not valid UTF-8")
                    }
                    texts.append(text)
                }
                if cursor.remaining != 0 { throw FlipEventError(field: "value", "has \(cursor.remaining) bytes after the last field") }
                guard epoch <= UInt64(Self.integerMax) else { throw FlipEventError(field: "epoch", "must be 0 to 2^53-1") }
                guard seq <= UInt64(Self.integerMax) else { throw FlipEventError(field: "seq", "must be 0 to 2^53-1") }
                return FlipEvent(
                    resource: resource, from: texts[0], to: texts[1], polarity: flags & 1 == 1 ? polarityByte : nil,
                    actor: texts[2], reason: texts[3], epoch: Int64(epoch), seq: Int64(seq), time: time)
            } catch let error as FlipEventError {
                throw error
            } catch let error as FormatError {
                throw FlipEventError(field: "value", "is not a flip event: \(error.message)")
            } catch {
                throw FlipEventError(field: "value", "\(error)")
            }
        }
        try event.validate()
        return event
    }

    // MARK: JSON

    public static let jsonKeys = ["resource", "from", "to", "polarity", "actor", "reason", "epoch", "seq", "time"]

    /// Reads the JSON form of spec section 1. Unknown keys, wrong types, numbers that are
    /// not integers (`7.0`, `1e3`) and every field rule make it invalid, naming the field.
    /// `null` reads as absent for the optional fields.
    public static func fromJSON(_ value: JSONValue) throws(FlipEventError) -> FlipEvent {
        guard case .object(let pairs) = value else { throw FlipEventError(field: "event", "must be a JSON object, got \(value.typeName)") }
        var fields: [String: JSONValue] = [:]
        for (key, value) in pairs {
            guard jsonKeys.contains(key) else { throw FlipEventError(field: key, "is not a field of a flip event (fields: \(jsonKeys.joined(separator: ", ")))") }
            fields[key] = value
        }
        func string(_ name: String, required: Bool) throws(FlipEventError) -> String {
            switch fields[name] {
            case nil, .null?:
                if required { throw FlipEventError(field: name, "is required") }
                return ""
            case .string(let text)?: return text
            case let other?: throw FlipEventError(field: name, "must be a string, got \(other.typeName)")
            }
        }
        func integer(_ name: String) throws(FlipEventError) -> Int64 {
            guard let value = fields[name], value != .null else { throw FlipEventError(field: name, "is required") }
            guard case .number(let text) = value else { throw FlipEventError(field: name, "must be an integer, got \(value.typeName)") }
            guard let number = value.integer else { throw FlipEventError(field: name, "must be an integer, got \(text)") }
            return number
        }
        var polarity: Int8?
        switch fields["polarity"] {
        case nil, .null?: polarity = nil
        case let value?:
            guard let number = value.integer, (-1...1).contains(number) else { throw FlipEventError(field: "polarity", "must be -1, 0 or 1") }
            polarity = Int8(number)
        }
        let event = FlipEvent(
            resource: try string("resource", required: true), from: try string("from", required: false),
            to: try string("to", required: true), polarity: polarity, actor: try string("actor", required: false),
            reason: try string("reason", required: false), epoch: try integer("epoch"), seq: try integer("seq"), time: try integer("time"))
        try event.validate()
        return event
    }

    /// The JSON form, keys in spec order, with the polarity as readers see it; without a
    /// polarity (nil), the key is left out, as `produce` reads it (the topic's map decides).
    public func json(resolvedPolarity: Int8?) -> String {
        "{\"resource\":\(StrictJSON.quote(resource)),\"from\":\(StrictJSON.quote(from)),\"to\":\(StrictJSON.quote(to))"
            + (resolvedPolarity.map { ",\"polarity\":\($0)" } ?? "") + ",\"actor\":\(StrictJSON.quote(actor)),\"reason\":\(StrictJSON.quote(reason))"
            + ",\"epoch\":\(epoch),\"seq\":\(seq),\"time\":\(time)}"
    }
}

/// A flip event breaks a rule: which field, and why.
public struct FlipEventError: Error, Equatable, Sendable, CustomStringConvertible {
    public var field: String
    public var reason: String

    public init(field: String, _ reason: String) {
        self.field = field
        self.reason = reason
    }

    public var description: String { "\(field) \(reason)" }
}

/// The storm parameters of Docs/spec/pauli-z.md section 6 when a topic gives none: interval S,
/// enter threshold E, exit threshold X. One place for the storage, the wire and the
/// command line.
public enum StormDefaults {
    public static let intervalMilliseconds: Int64 = 60_000
    public static let enter = 5
    public static let exit = 2

    /// The one rule for storm parameters, a topic's and a query's alike
    /// (`Limits.stormIntervalMillisecondsMax`, `Limits.stormThresholdMax`): interval 1 ms
    /// to 366 days, enter 1 to 1,000,000, exit at least 0 and below enter. Nil when they
    /// hold, else what is wrong. A nil argument is not known yet and not checked (a query
    /// sent to a server takes the topic's for those).
    public static func problem(intervalMilliseconds: Int64?, enter: Int?, exit: Int?) -> String? {
        if let intervalMilliseconds, intervalMilliseconds < 1 || intervalMilliseconds > Limits.stormIntervalMillisecondsMax {
            return "the storm interval must be 1 ms to 366 days (\(Limits.stormIntervalMillisecondsMax) ms), got \(intervalMilliseconds) ms"
        }
        if let enter, enter < 1 || enter > Limits.stormThresholdMax {
            return "the storm enter threshold must be 1 to \(Limits.stormThresholdMax), got \(enter)"
        }
        if let exit, exit < 0 || exit >= (enter ?? Int.max) {
            return "the storm exit threshold must be at least 0 and below the enter threshold (\(enter.map(String.init) ?? "the topic's")), got \(exit)"
        }
        return nil
    }
}
