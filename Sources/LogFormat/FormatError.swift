/// An error found while decoding or checking bytes of one of Lodestone's formats.
///
/// The `code` says what kind of rule was broken; the `message` names the field and, where
/// it is known, the byte position within the structure being decoded.
public struct FormatError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// Fewer bytes than the structure needs.
        case truncated
        /// A length or count field is negative, too large, or disagrees with the bytes present.
        case badLength
        /// A magic number or version is not one this code reads.
        case badMagic
        /// A stored checksum does not match the bytes it covers.
        case checksumMismatch
        /// A varint runs past its maximum length.
        case badVarint
        /// A record inside a batch breaks a rule (offset deltas, lengths, header keys).
        case badRecord
        /// A compression codec this build does not support (only none and LZ4 are).
        case unsupportedCompression
        /// Compressed data does not decode, or compression failed.
        case badCompression
        /// A size or count limit is exceeded.
        case limitExceeded
        /// Bytes follow the end of a complete structure.
        case trailingBytes
        /// A file name does not follow the naming rule.
        case badName
        /// An index or summary disagrees with the data it describes.
        case inconsistent
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
