import NIOCore

/// WireProtocol owns Lodestone's native binary protocol: frames, messages and their
/// codec, shared by the server, the client and the tools (Docs/protocol.md is the
/// specification). Codecs are pure: no sockets, tested with EmbeddedChannel.

/// One frame: a request or a response. On the wire, integers big-endian:
///
///     u32 length      bytes after this field: 6 + payload (at most `frameBytesMax`)
///     u32 request id  chosen by the client; a response carries its request's id
///     u16 kind        a request kind, or for a response the request's kind | 0x8000
///     payload
public struct Frame: Equatable, Sendable {
    public static let headerBytes = 10
    public static let responseFlag: UInt16 = 0x8000

    public var requestId: UInt32
    public var kind: UInt16
    public var payload: ByteBuffer

    public init(requestId: UInt32, kind: UInt16, payload: ByteBuffer) {
        self.requestId = requestId
        self.kind = kind
        self.payload = payload
    }

    public var isResponse: Bool { kind & Self.responseFlag != 0 }
}

/// A frame that cannot be read: its length is below the header's 6 bytes (`malformed`)
/// or above the limit (`frameTooLarge`). The connection cannot be read further. The
/// answer goes to the frame's request id and kind when its header is known (a frame too
/// large: the decoder reads its 10 header bytes, never its payload), else to id 0 and
/// kind 0 (0x8000 answered).
public struct FrameDecodingError: Error, Equatable, Sendable, CustomStringConvertible {
    public var error: ProtocolError
    public var requestId: UInt32
    public var kind: UInt16

    public init(_ error: ProtocolError, requestId: UInt32 = 0, kind: UInt16 = 0) {
        self.error = error
        self.requestId = requestId
        self.kind = kind
    }

    public var description: String { "\(error) (request id \(requestId), kind \(kind))" }
}

/// Splits bytes into frames. A length below 6 or above `frameBytesMax` is an error
/// (`FrameDecodingError`; the connection cannot be read further); a partial frame waits
/// for more bytes. A length above the limit is refused once the header's 10 bytes are
/// in, so the answer can name the request; the payload is never awaited or buffered.
public struct FrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = Frame

    public let frameBytesMax: Int

    public init(frameBytesMax: Int = WireLimits.frameBytesMax) {
        self.frameBytesMax = frameBytesMax
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return .needMoreData }
        if length < 6 { throw FrameDecodingError(ProtocolError(.malformed, "frame length \(length) is shorter than a frame header")) }
        if Int(length) > frameBytesMax {
            guard let requestId = buffer.getInteger(at: buffer.readerIndex + 4, as: UInt32.self),
                  let kind = buffer.getInteger(at: buffer.readerIndex + 8, as: UInt16.self) else { return .needMoreData }
            throw FrameDecodingError(
                ProtocolError(.frameTooLarge, "frame of \(length) bytes after its length field exceeds the limit of \(frameBytesMax)"), requestId: requestId, kind: kind)
        }
        guard buffer.readableBytes >= 4 + Int(length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 4)
        let requestId = buffer.readInteger(as: UInt32.self)!
        let kind = buffer.readInteger(as: UInt16.self)!
        let payload = buffer.readSlice(length: Int(length) - 6)!
        context.fireChannelRead(wrapInboundOut(Frame(requestId: requestId, kind: kind, payload: payload)))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        let state = try decode(context: context, buffer: &buffer)
        if state == .needMoreData && buffer.readableBytes > 0 && seenEOF {
            throw FrameDecodingError(ProtocolError(.malformed, "the connection closed in the middle of a frame (\(buffer.readableBytes) bytes)"))
        }
        return state
    }
}

public struct FrameEncoder: MessageToByteEncoder {
    public typealias OutboundIn = Frame

    public init() {}

    public func encode(data frame: Frame, out: inout ByteBuffer) throws {
        out.reserveCapacity(minimumWritableBytes: Frame.headerBytes + frame.payload.readableBytes)
        out.writeInteger(UInt32(6 + frame.payload.readableBytes))
        out.writeInteger(frame.requestId)
        out.writeInteger(frame.kind)
        var payload = frame.payload
        out.writeBuffer(&payload)
    }
}

/// The protocol's limits (Docs/protocol.md and Docs/limits.md list them).
public enum WireLimits {
    /// Largest frame: the bytes after its length field (request id, kind, payload). A
    /// frame on the wire is at most 4 bytes more.
    public static let frameBytesMax = 8 << 20
    /// A Pauli-Z answer's part: a frame less its header and the reply's error code.
    public static let paulizPartBytesMax = frameBytesMax - 64
    /// Largest Pauli-Z answer, all parts together (the server builds it whole, the client
    /// joins it whole).
    public static let paulizAnswerBytesMax = 64 << 20
    /// Most batches in one append request.
    public static let appendBatchCountMax = 1024
    /// Requests a connection may have outstanding; the server stops reading past it.
    public static let inFlightRequestsMax = 64
    /// Most bytes one fetch returns (the first batch is returned whole even when larger).
    public static let fetchBytesMax = 4 << 20
    /// Longest a fetch may wait for new data.
    public static let fetchWaitMillisecondsMax: UInt32 = 30_000
    /// Longest string field, in bytes (its length is a u16).
    public static let stringBytesMax = Int(UInt16.max)
    /// Most polarity-map entries in a topic creation.
    public static let polarityMapEntriesMax = 10_000
}
