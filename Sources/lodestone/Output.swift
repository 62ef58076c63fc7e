import LogFormat
import Foundation

/// One JSON object on one line, keys in the order given (LogFormat's JSONValue renders it).
func jsonLine(_ pairs: [(String, JSONValue)]) -> String {
    JSONValue.object(pairs.map { (key: $0.0, value: $0.1) }).json
}

/// Writes all of `text` to a file descriptor (stdout, stderr), straight to the descriptor so
/// that no stdio buffer is shared between threads; a closed pipe ends the writing quietly.
func writeAll(_ text: String, to descriptor: Int32) {
    var text = text
    text.withUTF8 { bytes in
        var offset = 0
        while offset < bytes.count {
            let written = write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 && errno == EINTR { continue }
            if written <= 0 { return }
            offset += written
        }
    }
}
