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
    text.withUTF8 { writeAll(UnsafeRawBufferPointer($0), to: descriptor) }
}

/// Writes all of `bytes` to a file descriptor, continuing after short writes and EINTR.
func writeAll(_ bytes: UnsafeRawBufferPointer, to descriptor: Int32) {
    var offset = 0
    while offset < bytes.count {
        let written = write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
        if written < 0 && errno == EINTR { continue }
        if written <= 0 { return }
        offset += written
    }
}

/// One line on stderr.
func printError(_ message: String) {
    writeAll(message + "\n", to: STDERR_FILENO)
}

/// A progress line on stderr, rewritten in place each second while work runs, when stderr
/// is a terminal (never into a file or pipe).
struct ProgressLine {
    private let task: Task<Void, Never>?

    init(_ text: @escaping @Sendable () -> String) {
        task = isatty(STDERR_FILENO) != 0 ? Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                if Task.isCancelled { break }
                writeAll("\r\u{1B}[K" + text(), to: STDERR_FILENO)
            }
        } : nil
    }

    /// Stops the updates and leaves `summary` as the last line (nothing without a terminal).
    func finish(_ summary: String) async {
        guard let task else { return }
        task.cancel()
        await task.value
        writeAll("\r\u{1B}[K" + summary + "\n", to: STDERR_FILENO)
    }
}
