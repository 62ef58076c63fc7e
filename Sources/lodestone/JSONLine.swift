/// One JSON object per line, keys in the order given. Values are strings, integers,
/// booleans, null, or nested objects and arrays of those.
enum JSONValue {
    case string(String)
    case integer(Int64)
    case bool(Bool)
    case null
    case object([(String, JSONValue)])
    case array([JSONValue])

    var text: String {
        switch self {
        case .string(let value): return JSONValue.quote(value)
        case .integer(let value): return String(value)
        case .bool(let value): return value ? "true" : "false"
        case .null: return "null"
        case .object(let pairs): return "{" + pairs.map { JSONValue.quote($0.0) + ":" + $0.1.text }.joined(separator: ",") + "}"
        case .array(let values): return "[" + values.map(\.text).joined(separator: ",") + "]"
        }
    }

    static func quote(_ string: String) -> String {
        var out = "\""
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

func jsonLine(_ pairs: [(String, JSONValue)]) -> String { JSONValue.object(pairs).text }
