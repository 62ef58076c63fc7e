/// Every error the protocol can carry: a code on the wire, a name in docs and tools, and
/// a meaning (Docs/protocol.md has the table). Append outcomes (committed, duplicate,
/// refused, fenced, out of order, unknown producer) are not errors: they are results.
public enum ErrorCode: UInt16, Sendable, CaseIterable {
    /// Success.
    case none = 0
    /// The client's newest protocol version is older than the server's oldest.
    case unsupportedVersion = 1
    /// The hello's token is missing or unknown.
    case unauthenticated = 2
    /// The token does not grant this right on this topic.
    case unauthorized = 3
    /// The frame or a field in it does not decode; the connection is closed.
    case malformed = 4
    /// The request kind is not one this server knows.
    case unknownRequest = 5
    /// A frame longer than the limit; the connection is closed.
    case frameTooLarge = 6
    /// The first request was not a hello, or a second hello came.
    case handshakeRequired = 7
    /// No such topic or partition.
    case notFound = 8
    /// A topic of that name exists.
    case alreadyExists = 9
    /// A field holds a value the request cannot take.
    case invalidArgument = 10
    /// A record batch breaks a format rule (CRC, structure, limits); not stored.
    case invalidBatch = 11
    /// The partition's write queue is full: retry later.
    case overloaded = 12
    /// The partition turned read-only after an I/O error; it recovers at restart.
    case readOnly = 13
    /// The offset is outside the partition's log.
    case offsetOutOfRange = 14
    /// Stored data failed a check; the message names the file and position.
    case corruption = 15
    /// A file operation failed on the server.
    case ioError = 16
    /// The server is shutting down; the request was not carried out.
    case shuttingDown = 17
    /// A limit is reached (named in the message).
    case limitReached = 18
    /// The server holds its connection limit.
    case tooManyConnections = 19
    /// Anything else went wrong on the server (a bug: the message says what).
    case internalError = 20

    public var name: String {
        switch self {
        case .none: return "none"
        case .unsupportedVersion: return "unsupported_version"
        case .unauthenticated: return "unauthenticated"
        case .unauthorized: return "unauthorized"
        case .malformed: return "malformed"
        case .unknownRequest: return "unknown_request"
        case .frameTooLarge: return "frame_too_large"
        case .handshakeRequired: return "handshake_required"
        case .notFound: return "not_found"
        case .alreadyExists: return "already_exists"
        case .invalidArgument: return "invalid_argument"
        case .invalidBatch: return "invalid_batch"
        case .overloaded: return "overloaded"
        case .readOnly: return "read_only"
        case .offsetOutOfRange: return "offset_out_of_range"
        case .corruption: return "corruption"
        case .ioError: return "io_error"
        case .shuttingDown: return "shutting_down"
        case .limitReached: return "limit_reached"
        case .tooManyConnections: return "too_many_connections"
        case .internalError: return "internal_error"
        }
    }
}

/// An error carried by a response, or found while decoding one.
public struct ProtocolError: Error, Equatable, Sendable, CustomStringConvertible {
    public var code: ErrorCode
    public var message: String

    public init(_ code: ErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.name): \(message)" }
}
