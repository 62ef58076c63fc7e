import LogFormat
import LogIO

/// An error of the storage layer. The `code` says what happened; the `message` names the
/// topic, partition, file, byte position or offset at fault, and `path` and `position`
/// carry the file and byte as fields when the error is about one (corruption, I/O), for
/// code that acts on them (`lodestone check`, tests, tools) without reading the message.
public struct StorageError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// The batch breaks a format rule (bad CRC, bad records, too large...). Not retried.
        case invalidBatch = "invalid_batch"
        /// The partition's writer queue is full. Retry later.
        case overloaded
        /// A write or fsync failed earlier; the partition takes no appends until restart
        /// and recovery (design decision 5). The message gives the original failure.
        case readOnly = "read_only"
        /// The partition or store was closed.
        case closed
        /// The offset asked for is outside the log.
        case offsetOutOfRange = "offset_out_of_range"
        /// Stored data fails a check where nothing can be torn: acknowledged data is damaged.
        case corruption
        /// A file operation failed.
        case io
        /// No such topic or partition.
        case notFound = "not_found"
        /// A topic of that name exists.
        case alreadyExists = "already_exists"
        /// A name, count or setting is not allowed.
        case invalidArgument = "invalid_argument"
        /// Another process holds the data directory's lock.
        case locked
        /// A limit of `Limits` or the configuration is reached.
        case limitReached = "limit_reached"
    }

    public var code: Code
    public var message: String
    /// The file at fault, when there is one.
    public var path: String?
    /// The byte position in `path` at fault, when the error is about one.
    public var position: Int64?

    public init(_ code: Code, _ message: String, path: String? = nil, position: Int64? = nil) {
        self.code = code
        self.message = message
        self.path = path
        self.position = position
    }

    public var description: String { "\(code.rawValue): \(message)" }

    static func io(_ error: IOError, _ context: String) -> StorageError {
        StorageError(.io, "\(context): \(error)", path: error.path)
    }

    /// Stored data at `path` fails a check: the message is the path and `detail` (which
    /// names the byte when there is a `position`).
    public static func corruption(_ path: String, position: Int64? = nil, _ detail: String) -> StorageError {
        StorageError(.corruption, "\(path): \(detail)", path: path, position: position)
    }
}

/// How an append is acknowledged (design decision 4).
public enum AckMode: String, Sendable, CaseIterable {
    /// After the fsync that covers the batch. The default.
    case durable
    /// After the batch is handed to the kernel, before it is synced; such an ack may
    /// overtake an earlier durable ack. Survives a process crash, not a power loss.
    case written
    /// No acknowledgement: the completion runs as soon as the batch is queued.
    case none
}

/// Where an appended batch landed.
public struct AppendResult: Equatable, Sendable {
    public var baseOffset: Int64
    public var lastOffset: Int64
    /// The append time stamped into the batch (milliseconds since the Unix epoch).
    public var appendTime: Int64

    public init(baseOffset: Int64, lastOffset: Int64, appendTime: Int64) {
        self.baseOffset = baseOffset
        self.lastOffset = lastOffset
        self.appendTime = appendTime
    }
}
