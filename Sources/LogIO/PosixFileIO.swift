import SystemPackage

import Synchronization
import Glibc

/// `FileIO` on the real file system: swift-system's `FileDescriptor` for open, pread,
/// pwrite, ftruncate and close (EINTR retried inside), the C library for what swift-system
/// lacks on Linux (fdatasync, fstat, rename, unlink, mkdir, readdir, flock).
public struct PosixFileIO: FileIO {
    public init() {}

    public func open(_ path: String, mode: OpenMode) throws(IOError) -> any StorageFile {
        let access: FileDescriptor.AccessMode
        var options: FileDescriptor.OpenOptions = [.closeOnExec]
        switch mode {
        case .readOnly: access = .readOnly
        case .readWrite: access = .readWrite
        case .createOrOpen:
            access = .readWrite
            options.insert(.create)
        case .createNew:
            access = .readWrite
            options.formUnion([.create, .exclusiveCreate])
        }
        do {
            let descriptor = try FileDescriptor.open(
                FilePath(path), access, options: options,
                permissions: [.ownerReadWrite, .groupRead, .otherRead], retryOnInterrupt: true)
            return PosixFile(path: path, descriptor: descriptor)
        } catch {
            throw IOError("open", path, error as? Errno ?? .ioError)
        }
    }

    public func rename(from: String, to: String) throws(IOError) {
        if retrying({ Glibc.rename(from, to) }) != 0 { throw IOError("rename to \(to)", from, Errno(rawValue: errno)) }
    }

    public func remove(_ path: String) throws(IOError) {
        if retrying({ unlink(path) }) != 0 { throw IOError("unlink", path, Errno(rawValue: errno)) }
    }

    public func removeDirectory(_ path: String) throws(IOError) {
        if retrying({ rmdir(path) }) != 0 { throw IOError("rmdir", path, Errno(rawValue: errno)) }
    }

    public func syncDirectory(_ path: String) throws(IOError) {
        let descriptor = retrying { Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        if descriptor < 0 { throw IOError("open directory", path, Errno(rawValue: errno)) }
        defer { Glibc.close(descriptor) }
        if retrying({ fsync(descriptor) }) != 0 { throw IOError("fsync directory", path, Errno(rawValue: errno)) }
    }

    public func list(_ directory: String) throws(IOError) -> [String] {
        guard let handle = opendir(directory) else { throw IOError("opendir", directory, Errno(rawValue: errno)) }
        defer { closedir(handle) }
        var names: [String] = []
        while let entry = readdir(handle) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    public func makeDirectory(_ path: String) throws(IOError) {
        if mkdir(path, 0o755) != 0 && errno != EEXIST { throw IOError("mkdir", path, Errno(rawValue: errno)) }
    }

    public func exists(_ path: String) -> Bool {
        var status = stat()
        return stat(path, &status) == 0
    }

    public func lockDirectory(_ path: String) throws(IOError) -> any DirectoryLock {
        let lockPath = joinPath(path, ".lock")
        let descriptor = retrying { Glibc.open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644) }
        if descriptor < 0 { throw IOError("open", lockPath, Errno(rawValue: errno)) }
        if retrying({ flock(descriptor, LOCK_EX | LOCK_NB) }) != 0 {
            let code = Errno(rawValue: errno)
            Glibc.close(descriptor)
            throw IOError("flock", lockPath, code)
        }
        return PosixDirectoryLock(descriptor: descriptor)
    }
}

/// Calls `body` again while it fails with EINTR.
@inline(__always)
func retrying(_ body: () -> Int32) -> Int32 {
    while true {
        let result = body()
        if result >= 0 || errno != EINTR { return result }
    }
}

final class PosixFile: StorageFile {
    let path: String
    let descriptor: FileDescriptor

    init(path: String, descriptor: FileDescriptor) {
        self.path = path
        self.descriptor = descriptor
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at position: Int64) throws(IOError) -> Int {
        do {
            return try descriptor.read(fromAbsoluteOffset: position, into: buffer, retryOnInterrupt: true)
        } catch {
            throw IOError("pread", path, error as? Errno ?? .ioError)
        }
    }

    func write(_ bytes: UnsafeRawBufferPointer, at position: Int64) throws(IOError) -> Int {
        do {
            return try descriptor.write(toAbsoluteOffset: position, bytes, retryOnInterrupt: true)
        } catch {
            throw IOError("pwrite", path, error as? Errno ?? .ioError)
        }
    }

    func dataSync() throws(IOError) {
        if retrying({ fdatasync(descriptor.rawValue) }) != 0 { throw IOError("fdatasync", path, Errno(rawValue: errno)) }
    }

    func truncate(to size: Int64) throws(IOError) {
        do {
            try descriptor.resize(to: size, retryOnInterrupt: true)
        } catch {
            throw IOError("ftruncate", path, error as? Errno ?? .ioError)
        }
    }

    func size() throws(IOError) -> Int64 {
        var status = stat()
        if fstat(descriptor.rawValue, &status) != 0 { throw IOError("fstat", path, Errno(rawValue: errno)) }
        return Int64(status.st_size)
    }

    func close() throws(IOError) {
        do {
            try descriptor.close()
        } catch {
            throw IOError("close", path, error as? Errno ?? .ioError)
        }
    }
}

final class PosixDirectoryLock: DirectoryLock {
    private let descriptor: Int32
    private let released = Atomic<Bool>(false)

    init(descriptor: Int32) { self.descriptor = descriptor }

    func release() {
        if released.exchange(true, ordering: .acquiringAndReleasing) { return }
        Glibc.close(descriptor)
    }

    deinit { release() }
}
