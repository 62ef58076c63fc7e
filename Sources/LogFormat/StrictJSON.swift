/// A small, strict JSON reader (RFC 8259) for the JSON lines Lodestone reads: flip events
/// and raw records. Strict where a lenient parser would lose information silently:
/// numbers keep their exact text (so `7.0` and `1e3` can be refused where an integer is
/// required), duplicate keys are an error, and nothing may follow the value but spaces.
/// Depth and size are bounded.
public indirect enum JSONValue: Equatable, Sendable {
    case object([(key: String, value: JSONValue)])
    case array([JSONValue])
    case string(String)
    /// The number's text exactly as written.
    case number(String)
    case bool(Bool)
    case null

    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.object(let a), .object(let b)): return a.count == b.count && zip(a, b).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        case (.array(let a), .array(let b)): return a == b
        case (.string(let a), .string(let b)): return a == b
        case (.number(let a), .number(let b)): return a == b
        case (.bool(let a), .bool(let b)): return a == b
        case (.null, .null): return true
        default: return false
        }
    }

    /// The value of an integer written without fraction or exponent, within Int64; nil
    /// for any other number (`7.0`, `1e3`, `-0.5`) or out of range.
    public var integer: Int64? {
        guard case .number(let text) = self else { return nil }
        let bytes = Array(text.utf8)
        let digits = bytes.first == UInt8(ascii: "-") ? bytes.dropFirst() : bytes[...]
        guard !digits.isEmpty, digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return Int64(text)
    }

    /// The value as JSON text: objects keep their key order, numbers their text.
    public var json: String {
        switch self {
        case .object(let pairs): return "{" + pairs.map { StrictJSON.quote($0.key) + ":" + $0.value.json }.joined(separator: ",") + "}"
        case .array(let values): return "[" + values.map(\.json).joined(separator: ",") + "]"
        case .string(let text): return StrictJSON.quote(text)
        case .number(let text): return text
        case .bool(let value): return value ? "true" : "false"
        case .null: return "null"
        }
    }

    /// An integer as a JSON number.
    public static func integer(_ value: some BinaryInteger) -> JSONValue { .number(String(value)) }

    public var typeName: String {
        switch self {
        case .object: return "an object"
        case .array: return "an array"
        case .string: return "a string"
        case .number: return "a number"
        case .bool: return "a boolean"
        case .null: return "null"
        }
    }
}

public struct JSONError: Error, Equatable, Sendable, CustomStringConvertible {
    public var message: String
    /// Byte position in the input.
    public var position: Int
    public var description: String { "\(message) at byte \(position)" }
}

public enum StrictJSON {
    public static let depthMax = 32

    public static func parse(_ bytes: [UInt8]) throws(JSONError) -> JSONValue {
        try withBytes(bytes) { (raw) throws(JSONError) in
            var parser = Parser(bytes: raw)
            parser.skipSpace()
            let value = try parser.value(depth: 0)
            parser.skipSpace()
            if parser.position != raw.count { throw parser.error("unexpected bytes after the value") }
            return value
        }
    }

    public static func parse(_ text: String) throws(JSONError) -> JSONValue {
        try parse(Array(text.utf8))
    }

    /// Writes a string as a JSON string literal: quotes, backslashes and control
    /// characters escaped, everything else as UTF-8.
    public static func quote(_ string: String) -> String {
        var out = "\""
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    struct Parser {
        let bytes: UnsafeRawBufferPointer
        var position = 0

        func error(_ message: String) -> JSONError { JSONError(message: message, position: position) }

        mutating func skipSpace() {
            while position < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[position]) { position += 1 }
        }

        mutating func value(depth: Int) throws(JSONError) -> JSONValue {
            if depth > StrictJSON.depthMax { throw error("nested deeper than \(StrictJSON.depthMax) levels") }
            guard position < bytes.count else { throw error("the input ends where a value should start") }
            switch bytes[position] {
            case UInt8(ascii: "{"): return try object(depth: depth)
            case UInt8(ascii: "["): return try array(depth: depth)
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): try literal("true"); return .bool(true)
            case UInt8(ascii: "f"): try literal("false"); return .bool(false)
            case UInt8(ascii: "n"): try literal("null"); return .null
            default: return .number(try number())
            }
        }

        mutating func literal(_ word: StaticString) throws(JSONError) {
            let count = word.utf8CodeUnitCount
            guard position + count <= bytes.count,
                  (0..<count).allSatisfy({ bytes[position + $0] == word.utf8Start[$0] }) else { throw error("not a JSON value") }
            position += count
        }

        mutating func object(depth: Int) throws(JSONError) -> JSONValue {
            position += 1
            var pairs: [(key: String, value: JSONValue)] = []
            var keys = Set<String>()
            skipSpace()
            if position < bytes.count && bytes[position] == UInt8(ascii: "}") {
                position += 1
                return .object(pairs)
            }
            while true {
                skipSpace()
                guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else { throw error("an object key must be a string") }
                let keyPosition = position
                let key = try string()
                if !keys.insert(key).inserted { throw JSONError(message: "duplicate key \"\(key)\"", position: keyPosition) }
                skipSpace()
                guard position < bytes.count, bytes[position] == UInt8(ascii: ":") else { throw error("expected ':' after an object key") }
                position += 1
                skipSpace()
                pairs.append((key, try value(depth: depth + 1)))
                skipSpace()
                guard position < bytes.count else { throw error("the object is not closed") }
                if bytes[position] == UInt8(ascii: ",") { position += 1; continue }
                if bytes[position] == UInt8(ascii: "}") { position += 1; return .object(pairs) }
                throw error("expected ',' or '}' in an object")
            }
        }

        mutating func array(depth: Int) throws(JSONError) -> JSONValue {
            position += 1
            var values: [JSONValue] = []
            skipSpace()
            if position < bytes.count && bytes[position] == UInt8(ascii: "]") {
                position += 1
                return .array(values)
            }
            while true {
                skipSpace()
                values.append(try value(depth: depth + 1))
                skipSpace()
                guard position < bytes.count else { throw error("the array is not closed") }
                if bytes[position] == UInt8(ascii: ",") { position += 1; continue }
                if bytes[position] == UInt8(ascii: "]") { position += 1; return .array(values) }
                throw error("expected ',' or ']' in an array")
            }
        }

        mutating func number() throws(JSONError) -> String {
            let start = position
            func digits(_ parser: inout Parser) -> Int {
                let from = parser.position
                while parser.position < parser.bytes.count, parser.bytes[parser.position] >= 0x30, parser.bytes[parser.position] <= 0x39 { parser.position += 1 }
                return parser.position - from
            }
            if position < bytes.count && bytes[position] == UInt8(ascii: "-") { position += 1 }
            guard position < bytes.count else { throw error("not a JSON value") }
            if bytes[position] == UInt8(ascii: "0") {
                position += 1
            } else if digits(&self) == 0 {
                throw error("not a JSON value")
            }
            if position < bytes.count && bytes[position] == UInt8(ascii: ".") {
                position += 1
                if digits(&self) == 0 { throw error("a number's fraction needs digits") }
            }
            if position < bytes.count && (bytes[position] == UInt8(ascii: "e") || bytes[position] == UInt8(ascii: "E")) {
                position += 1
                if position < bytes.count && (bytes[position] == UInt8(ascii: "+") || bytes[position] == UInt8(ascii: "-")) { position += 1 }
                if digits(&self) == 0 { throw error("a number's exponent needs digits") }
            }
            return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)
        }

        mutating func string() throws(JSONError) -> String {
            position += 1
            var utf8: [UInt8] = []
            while true {
                guard position < bytes.count else { throw error("the string is not closed") }
                let byte = bytes[position]
                if byte == UInt8(ascii: "\"") {
                    position += 1
                    guard let text = String(validating: utf8, as: UTF8.self) else { throw error("the string is not valid UTF-8") }
                    return text
                }
                if byte < 0x20 { throw error("a control character must be escaped in a string") }
                if byte != UInt8(ascii: "\\") {
                    utf8.append(byte)
                    position += 1
                    continue
                }
                position += 1
                guard position < bytes.count else { throw error("the string is not closed") }
                let escape = bytes[position]
                position += 1
                switch escape {
                case UInt8(ascii: "\""): utf8.append(0x22)
                case UInt8(ascii: "\\"): utf8.append(0x5C)
                case UInt8(ascii: "/"): utf8.append(0x2F)
                case UInt8(ascii: "b"): utf8.append(0x08)
                case UInt8(ascii: "f"): utf8.append(0x0C)
                case UInt8(ascii: "n"): utf8.append(0x0A)
                case UInt8(ascii: "r"): utf8.append(0x0D)
                case UInt8(ascii: "t"): utf8.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try hex4()
                    if (0xD800...0xDBFF).contains(scalar) {
                        guard position + 1 < bytes.count, bytes[position] == UInt8(ascii: "\\"), bytes[position + 1] == UInt8(ascii: "u") else {
                            throw error("a high surrogate must be followed by a low surrogate")
                        }
                        position += 2
                        let low = try hex4()
                        guard (0xDC00...0xDFFF).contains(low) else { throw error("a high surrogate must be followed by a low surrogate") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00...0xDFFF).contains(scalar) {
                        throw error("a lone low surrogate")
                    }
                    utf8.append(contentsOf: String(Unicode.Scalar(scalar)!).utf8)
                default:
                    throw error("unknown escape in a string")
                }
            }
        }

        mutating func hex4() throws(JSONError) -> UInt32 {
            guard position + 4 <= bytes.count else { throw error("\\u needs four hex digits") }
            var value: UInt32 = 0
            for _ in 0..<4 {
                let byte = bytes[position]
                let digit: UInt32
                switch byte {
                case 0x30...0x39: digit = UInt32(byte - 0x30)
                case 0x41...0x46: digit = UInt32(byte - 0x41 + 10)
                case 0x61...0x66: digit = UInt32(byte - 0x61 + 10)
                default: throw error("\\u needs four hex digits")
                }
                value = value << 4 | digit
                position += 1
            }
            return value
        }
    }
}
