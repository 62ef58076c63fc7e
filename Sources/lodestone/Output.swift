import LogFormat

/// One JSON object on one line, keys in the order given (LogFormat's JSONValue renders it).
func jsonLine(_ pairs: [(String, JSONValue)]) -> String {
    JSONValue.object(pairs.map { (key: $0.0, value: $0.1) }).json
}
