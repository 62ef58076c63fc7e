import SystemPackage

/// LogIO owns the boundary between Lodestone's storage and the operating system: the
/// `FileIO` protocol that storage code is written against, its POSIX implementation,
/// the wall clock, and the executor that runs blocking file work off the network and
/// Swift concurrency threads. The same storage code runs on the real disk
/// (`PosixFileIO`) and on the simulated one in LogSimulation, which tears, loses and fails
/// writes deterministically from a seed.

/// A failed file operation: which one, on which path, and the errno it returned.
public struct IOError: Error, Sendable, Equatable, CustomStringConvertible {
    public var operation: String
    public var path: String
    public var errno: Errno

    public init(_ operation: String, _ path: String, _ errno: Errno) {
        self.operation = operation
        self.path = path
        self.errno = errno
    }

    public var description: String { "\(operation) \(path): \(errno) (errno \(errno.rawValue))" }
}

/// Whether `open` may create the file.
public enum OpenMode: Sendable {
    /// Open an existing file for reading only.
    case readOnly
    /// Open an existing file for reading and writing.
    case readWrite
    /// Open for reading and writing, creating the file (empty) when it does not exist.
    case createOrOpen
    /// Create a new empty file; fails with EEXIST when it exists.
    case createNew
}

/// The file operations Lodestone's storage uses, and nothing else.
///
/// Paths are absolute or relative strings joined with `/`. Implementations retry EINTR
/// internally and report every other failure as an `IOError`.
public protocol FileIO: Sendable {
    func open(_ path: String, mode: OpenMode) throws(IOError) -> any StorageFile
    /// Atomically replaces `to` with `from` (POSIX rename).
    func rename(from: String, to: String) throws(IOError)
    func remove(_ path: String) throws(IOError)
    /// Removes an empty directory.
    func removeDirectory(_ path: String) throws(IOError)
    /// Makes the directory's entries (creations, renames, removals) durable.
    func syncDirectory(_ path: String) throws(IOError)
    /// Names of the entries of a directory, without "." and "..", in no set order.
    func list(_ directory: String) throws(IOError) -> [String]
    /// Creates a directory; succeeds when it exists already.
    func makeDirectory(_ path: String) throws(IOError)
    func exists(_ path: String) -> Bool
    /// Takes an exclusive lock on a directory (through a `.lock` file inside it), held
    /// until the returned lock is released. Fails with EWOULDBLOCK when another holder has it.
    func lockDirectory(_ path: String) throws(IOError) -> any DirectoryLock
}

/// An open file. Reads and writes take absolute positions (pread/pwrite), so one handle
/// can serve a writer and concurrent readers.
public protocol StorageFile: AnyObject, Sendable {
    var path: String { get }
    /// One read at `position`; returns fewer bytes than asked at end of file.
    func read(into buffer: UnsafeMutableRawBufferPointer, at position: Int64) throws(IOError) -> Int
    /// One write at `position`; may write fewer bytes than given.
    func write(_ bytes: UnsafeRawBufferPointer, at position: Int64) throws(IOError) -> Int
    /// fdatasync: the file's data, and the metadata needed to read it back, are durable.
    func dataSync() throws(IOError)
    func truncate(to size: Int64) throws(IOError)
    func size() throws(IOError) -> Int64
    func close() throws(IOError)
}

public protocol DirectoryLock: AnyObject, Sendable {
    func release()
}

extension StorageFile {
    /// Writes all of `bytes` at `position`, continuing after short writes.
    public func writeAll(_ bytes: UnsafeRawBufferPointer, at position: Int64) throws(IOError) {
        var done = 0
        while done < bytes.count {
            let written = try write(UnsafeRawBufferPointer(rebasing: bytes[done...]), at: position + Int64(done))
            if written <= 0 { throw IOError("pwrite", path, .noSpace) }
            done += written
        }
    }

    public func writeAll(_ bytes: [UInt8], at position: Int64) throws(IOError) {
        try withBytes(bytes) { (raw) throws(IOError) in try writeAll(raw, at: position) }
    }

    /// Reads until `buffer` is full or the file ends; returns the bytes read.
    public func readFully(into buffer: UnsafeMutableRawBufferPointer, at position: Int64) throws(IOError) -> Int {
        var done = 0
        while done < buffer.count {
            let count = try read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[done...]), at: position + Int64(done))
            if count == 0 { break }
            done += count
        }
        return done
    }

    /// Reads up to `count` bytes at `position` (fewer at end of file).
    public func read(count: Int, at position: Int64) throws(IOError) -> [UInt8] {
        var failure: IOError?
        let bytes = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            do throws(IOError) {
                initialized = try readFully(into: UnsafeMutableRawBufferPointer(buffer), at: position)
            } catch {
                failure = error
                initialized = 0
            }
        }
        if let failure { throw failure }
        return bytes
    }
}

extension FileIO {
    /// Reads a whole file of at most `bytesMax` bytes.
    public func readWholeFile(_ path: String, bytesMax: Int) throws(IOError) -> [UInt8] {
        let file = try open(path, mode: .readOnly)
        defer { try? file.close() }
        let size = try file.size()
        if size > Int64(bytesMax) { throw IOError("read", path, .fileTooLarge) }
        return try file.read(count: Int(size), at: 0)
    }

    /// Writes a file so that a crash leaves either the old content or the new, never a
    /// mix: write a temporary file, fsync it, rename it over the target, fsync the directory.
    public func writeFileAtomically(_ path: String, _ bytes: [UInt8]) throws(IOError) {
        let temporary = path + ".tmp"
        if exists(temporary) { try remove(temporary) }
        let file = try open(temporary, mode: .createNew)
        do {
            try file.writeAll(bytes, at: 0)
            try file.dataSync()
            try file.close()
        } catch {
            try? file.close()
            throw error
        }
        try rename(from: temporary, to: path)
        try syncDirectory(parentDirectory(of: path))
    }
}

/// The directory part of a path ("." when there is none).
public func parentDirectory(of path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    if slash == path.startIndex { return "/" }
    return String(path[..<slash])
}

/// Joins path components with "/".
public func joinPath(_ base: String, _ components: String...) -> String {
    components.reduce(base) { $0.hasSuffix("/") ? $0 + $1 : $0 + "/" + $1 }
}

/// `withUnsafeBytes` for a body with a typed error (the standard library's
/// `Array.withUnsafeBytes` rethrows untyped errors).
@inlinable
public func withBytes<R, E: Error>(_ bytes: [UInt8], _ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
    let result = bytes.withUnsafeBytes { raw in
        Result { () throws(E) -> R in try body(raw) }
    }
    return try result.get()
}
