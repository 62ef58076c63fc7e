import LogIO
import Synchronization
import SystemPackage

/// LogSimulation is test support only: a deterministic simulated disk, clock, executor and
/// seeded randomness, so that storage code written against `FileIO` can be crashed,
/// starved and corrupted thousands of times a second, reproducibly from a seed. No
/// production module imports it.

/// A file system in memory that behaves like a real one at a crash, only worse, and
/// always the same way for the same seed.
///
/// Data: every file has the content a process sees (the page cache) and the content that
/// is on stable storage. `dataSync` makes the first the second. At a power loss each page
/// written since the last sync independently survives, is lost, or is torn (each 512-byte
/// sector of it new or old), so a later page may survive while an earlier one is lost; the
/// file's size is either its synced size or its current one.
///
/// Names: creations, renames and removals are journaled in order. `syncDirectory(d)` makes
/// durable every pending change up to the last one that touches `d`; at a power loss a
/// random prefix of the pending changes survives.
///
/// Faults, injected by the test: the next fsync fails with EIO; the next write fails
/// (ENOSPC) or writes only part of its bytes; after N more operations the disk freezes
/// (every call fails with EIO) until `crash`; a bit flips in stored data.
public final class SimulatedDisk: FileIO {
    public static let pageSize = 4096
    public static let sectorSize = 512

    public enum CrashKind: Sendable {
        /// The process dies; the kernel keeps everything it was given.
        case process
        /// The machine loses power; only synced data is sure to survive.
        case powerLoss
    }

    public enum Fault: Sendable, Equatable {
        case syncFails
        case writeFails(Errno)
        case shortWrite
        /// The disk stops working after this many more operations, as if the process were
        /// killed in the middle of what it was doing.
        case freeze(afterOperations: Int)
    }

    public struct Counters: Sendable, Equatable {
        public var writes = 0
        public var writtenBytes = 0
        public var dataSyncs = 0
        public var directorySyncs = 0
        public var crashes = 0
    }

    final class Inode {
        var current: [UInt8] = []
        var durable: [UInt8] = []
        var dirtyPages = Set<Int>()
    }

    enum Change {
        case link(path: String, inode: Int)
        case unlink(path: String)
        case makeDirectory(path: String)
        case removeDirectory(path: String)
        /// A directory and everything under it moves at once.
        case renameDirectory(from: String, to: String)
        case rename(from: String, to: String, inode: Int)
    }

    struct State {
        var random: SplitMix64
        var inodes: [Int: Inode] = [:]
        var nextInode = 1
        var names: [String: Int] = [:]
        var durableNames: [String: Int] = [:]
        var directories: Set<String> = []
        var durableDirectories: Set<String> = []
        var pending: [Change] = []
        var locks: Set<String> = []
        var generation = 0
        var faults: [Fault] = []
        var operationsUntilFreeze: Int?
        var frozen = false
        var counters = Counters()
    }

    let state: Mutex<State>

    public init(seed: UInt64) {
        var initial = State(random: SplitMix64(seed: seed))
        initial.directories = ["/"]
        initial.durableDirectories = ["/"]
        state = Mutex(initial)
    }

    // MARK: Test controls

    public func inject(_ fault: Fault) {
        state.withLock { state in
            if case .freeze(let count) = fault {
                state.operationsUntilFreeze = count
            } else {
                state.faults.append(fault)
            }
        }
    }

    /// Forgets injected faults that have not fired (the process they were meant for ended).
    public func clearFaults() {
        state.withLock { state in
            state.faults.removeAll()
            state.operationsUntilFreeze = nil
        }
    }

    public var isFrozen: Bool { state.withLock { $0.frozen } }
    public var counters: Counters { state.withLock { $0.counters } }

    /// Ends the current "process": open files and locks become invalid, faults are cleared;
    /// for a power loss, unsynced data and names are lost or torn as described above.
    public func crash(_ kind: CrashKind) {
        state.withLock { state in
            state.generation += 1
            state.locks.removeAll()
            state.faults.removeAll()
            state.operationsUntilFreeze = nil
            state.frozen = false
            state.counters.crashes += 1
            if kind == .powerLoss { Self.losePower(&state) }
        }
    }

    private static func losePower(_ state: inout State) {
        let surviving = Int.random(in: 0...state.pending.count, using: &state.random)
        for change in state.pending.prefix(surviving) { apply(change, to: &state.durableNames, directories: &state.durableDirectories) }
        state.pending.removeAll()
        state.names = state.durableNames
        state.directories = state.durableDirectories
        let live = Set(state.names.values)
        state.inodes = state.inodes.filter { live.contains($0.key) }
        // In inode order: dictionary order differs between processes, and a seed must
        // replay the same in every process.
        for id in state.inodes.keys.sorted() {
            tear(state.inodes[id]!, random: &state.random)
        }
    }

    /// The content after a power loss: synced content, with each dirty page surviving,
    /// lost, or torn sector by sector; size old or new.
    private static func tear(_ inode: Inode, random: inout SplitMix64) {
        let size = inode.current.count == inode.durable.count || Bool.random(using: &random)
            ? inode.current.count : inode.durable.count
        var result = Array(inode.durable.prefix(size))
        if result.count < size { result.append(contentsOf: repeatElement(0, count: size - result.count)) }
        for page in inode.dirtyPages.sorted() {
            let start = page * pageSize
            let end = min(start + pageSize, size, inode.current.count)
            if start >= end { continue }
            switch Int.random(in: 0..<3, using: &random) {
            case 0:
                result.replaceSubrange(start..<end, with: inode.current[start..<end])
            case 1:
                break
            default:
                var sector = start
                while sector < end {
                    let sectorEnd = min(sector + sectorSize, end)
                    if Bool.random(using: &random) { result.replaceSubrange(sector..<sectorEnd, with: inode.current[sector..<sectorEnd]) }
                    sector = sectorEnd
                }
            }
        }
        inode.current = result
        inode.durable = result
        inode.dirtyPages.removeAll()
    }

    private static func apply(_ change: Change, to names: inout [String: Int], directories: inout Set<String>) {
        switch change {
        case .link(let path, let inode): names[path] = inode
        case .unlink(let path): names[path] = nil
        case .makeDirectory(let path): directories.insert(path)
        case .removeDirectory(let path): directories.remove(path)
        case .renameDirectory(let from, let to):
            func moved(_ path: String) -> String? {
                if path == from { return to }
                return path.hasPrefix(from + "/") ? to + path.dropFirst(from.count) : nil
            }
            for (path, inode) in names { if let target = moved(path) { names[path] = nil; names[target] = inode } }
            directories = Set(directories.map { moved($0) ?? $0 })
        case .rename(let from, let to, let inode):
            names[from] = nil
            names[to] = inode
        }
    }

    private static func touches(_ change: Change, _ directory: String) -> Bool {
        switch change {
        case .link(let path, _), .unlink(let path), .makeDirectory(let path), .removeDirectory(let path):
            return parentDirectory(of: path) == directory
        case .rename(let from, let to, _), .renameDirectory(let from, let to):
            return parentDirectory(of: from) == directory || parentDirectory(of: to) == directory
        }
    }

    /// Flips one bit of a file's stored data (both what is synced and what a process sees):
    /// bit rot at rest.
    public func flipBit(path: String, byteOffset: Int, bit: Int) {
        state.withLock { state in
            guard let id = state.names[path], let inode = state.inodes[id] else { preconditionFailure("no file \(path)") }
            precondition(byteOffset < inode.current.count, "byte \(byteOffset) is past the end of \(path)")
            inode.current[byteOffset] ^= UInt8(1 << bit)
            if byteOffset < inode.durable.count { inode.durable[byteOffset] ^= UInt8(1 << bit) }
        }
    }

    /// Paths of all files, sorted.
    public func filePaths() -> [String] { state.withLock { $0.names.keys.sorted() } }

    /// A file's content as a process sees it, or nil.
    public func content(of path: String) -> [UInt8]? {
        state.withLock { state in state.names[path].flatMap { state.inodes[$0]?.current } }
    }

    /// Unsynced written data at the end of a file: from the first position where the
    /// current content differs from the synced one to the last non-zero byte (zeros written
    /// ahead of the data, pre-written space, carry nothing that could tear).
    public func unsyncedTailBytes(_ path: String) -> Int {
        state.withLock { state in
            guard let id = state.names[path], let inode = state.inodes[id] else { return 0 }
            let common = min(inode.current.count, inode.durable.count)
            var first = common
            for page in inode.dirtyPages.sorted() where page * Self.pageSize < common {
                let end = min((page + 1) * Self.pageSize, common)
                if let differing = (page * Self.pageSize..<end).first(where: { inode.current[$0] != inode.durable[$0] }) {
                    first = differing
                    break
                }
            }
            let lastNonZero = inode.current.lastIndex(where: { $0 != 0 }).map { $0 + 1 } ?? 0
            return max(0, lastNonZero - first)
        }
    }

    /// True when everything a process sees of this file is also synced.
    public func isSynced(_ path: String) -> Bool {
        state.withLock { state in
            guard let id = state.names[path], let inode = state.inodes[id] else { return false }
            return inode.dirtyPages.isEmpty && inode.current == inode.durable && state.durableNames[path] == id
        }
    }

    // MARK: FileIO

    /// Counts an operation toward a planned freeze; throws when the disk is frozen.
    static func operate(_ state: inout State, _ operation: String, _ path: String, mutating: Bool = true) throws(IOError) {
        if state.frozen { throw IOError(operation, path, .ioError) }
        guard mutating, let remaining = state.operationsUntilFreeze else { return }
        if remaining <= 0 {
            state.frozen = true
            throw IOError(operation, path, .ioError)
        }
        state.operationsUntilFreeze = remaining - 1
    }

    public func open(_ path: String, mode: OpenMode) throws(IOError) -> any StorageFile {
        try state.withLock { (state) throws(IOError) -> any StorageFile in
            let existing = state.names[path]
            switch (mode, existing) {
            case (.readOnly, nil), (.readWrite, nil):
                try Self.operate(&state, "open", path, mutating: false)
                throw IOError("open", path, .noSuchFileOrDirectory)
            case (.createNew, _?):
                try Self.operate(&state, "open", path, mutating: false)
                throw IOError("open", path, .fileExists)
            case (_, let id?):
                try Self.operate(&state, "open", path, mutating: false)
                return SimulatedFile(disk: self, path: path, inode: id, generation: state.generation, writable: mode != .readOnly)
            case (_, nil):
                try Self.operate(&state, "open", path)
                guard state.directories.contains(parentDirectory(of: path)) else { throw IOError("open", path, .noSuchFileOrDirectory) }
                let id = state.nextInode
                state.nextInode += 1
                state.inodes[id] = Inode()
                state.names[path] = id
                state.pending.append(.link(path: path, inode: id))
                return SimulatedFile(disk: self, path: path, inode: id, generation: state.generation, writable: true)
            }
        }
    }

    public func rename(from: String, to: String) throws(IOError) {
        try state.withLock { (state) throws(IOError) in
            try Self.operate(&state, "rename", from)
            if state.directories.contains(from) {
                if state.directories.contains(to) || state.names[to] != nil { throw IOError("rename", from, .fileExists) }
                let change = Change.renameDirectory(from: from, to: to)
                Self.apply(change, to: &state.names, directories: &state.directories)
                state.pending.append(change)
                return
            }
            guard let id = state.names[from] else { throw IOError("rename", from, .noSuchFileOrDirectory) }
            state.names[from] = nil
            state.names[to] = id
            state.pending.append(.rename(from: from, to: to, inode: id))
        }
    }

    public func remove(_ path: String) throws(IOError) {
        try state.withLock { (state) throws(IOError) in
            try Self.operate(&state, "unlink", path)
            guard state.names[path] != nil else { throw IOError("unlink", path, .noSuchFileOrDirectory) }
            state.names[path] = nil
            state.pending.append(.unlink(path: path))
        }
    }

    public func removeDirectory(_ path: String) throws(IOError) {
        try state.withLock { (state) throws(IOError) in
            try Self.operate(&state, "rmdir", path)
            guard state.directories.contains(path) else { throw IOError("rmdir", path, .noSuchFileOrDirectory) }
            let occupied = state.names.keys.contains { parentDirectory(of: $0) == path }
                || state.directories.contains { $0 != path && parentDirectory(of: $0) == path }
            if occupied { throw IOError("rmdir", path, .directoryNotEmpty) }
            state.directories.remove(path)
            state.pending.append(.removeDirectory(path: path))
        }
    }

    public func syncDirectory(_ path: String) throws(IOError) {
        try state.withLock { (state) throws(IOError) in
            try Self.operate(&state, "fsync directory", path)
            guard state.directories.contains(path) else { throw IOError("open directory", path, .noSuchFileOrDirectory) }
            state.counters.directorySyncs += 1
            guard let last = state.pending.lastIndex(where: { Self.touches($0, path) }) else { return }
            for change in state.pending[...last] { Self.apply(change, to: &state.durableNames, directories: &state.durableDirectories) }
            state.pending.removeFirst(last + 1)
        }
    }

    public func list(_ directory: String) throws(IOError) -> [String] {
        try state.withLock { (state) throws(IOError) -> [String] in
            try Self.operate(&state, "opendir", directory, mutating: false)
            guard state.directories.contains(directory) else { throw IOError("opendir", directory, .noSuchFileOrDirectory) }
            let files = state.names.keys.filter { parentDirectory(of: $0) == directory }
            let subdirectories = state.directories.filter { $0 != directory && parentDirectory(of: $0) == directory }
            return (files + subdirectories).map { String($0.split(separator: "/").last ?? "") }.sorted()
        }
    }

    public func makeDirectory(_ path: String) throws(IOError) {
        try state.withLock { (state) throws(IOError) in
            if state.directories.contains(path) { return }
            try Self.operate(&state, "mkdir", path)
            guard state.directories.contains(parentDirectory(of: path)) else { throw IOError("mkdir", path, .noSuchFileOrDirectory) }
            state.directories.insert(path)
            state.pending.append(.makeDirectory(path: path))
        }
    }

    public func exists(_ path: String) -> Bool {
        state.withLock { $0.names[path] != nil || $0.directories.contains(path) }
    }

    public func lockDirectory(_ path: String) throws(IOError) -> any DirectoryLock {
        try state.withLock { (state) throws(IOError) -> any DirectoryLock in
            if state.locks.contains(path) { throw IOError("flock", joinPath(path, ".lock"), .wouldBlock) }
            state.locks.insert(path)
            return SimulatedLock(disk: self, path: path, generation: state.generation)
        }
    }
}

final class SimulatedLock: DirectoryLock {
    let disk: SimulatedDisk
    let path: String
    let generation: Int

    init(disk: SimulatedDisk, path: String, generation: Int) {
        self.disk = disk
        self.path = path
        self.generation = generation
    }

    func release() {
        disk.state.withLock { state in
            if state.generation == generation { state.locks.remove(path) }
        }
    }
}

final class SimulatedFile: StorageFile {
    let disk: SimulatedDisk
    let path: String
    let inode: Int
    let generation: Int
    let writable: Bool

    init(disk: SimulatedDisk, path: String, inode: Int, generation: Int, writable: Bool) {
        self.disk = disk
        self.path = path
        self.inode = inode
        self.generation = generation
        self.writable = writable
    }

    /// The inode, if this handle still belongs to the running "process".
    private func access(_ state: inout SimulatedDisk.State, _ operation: String, mutating: Bool) throws(IOError) -> SimulatedDisk.Inode {
        if state.generation != generation { throw IOError(operation, path, .badFileDescriptor) }
        try SimulatedDisk.operate(&state, operation, path, mutating: mutating)
        guard let node = state.inodes[inode] else { throw IOError(operation, path, .badFileDescriptor) }
        return node
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at position: Int64) throws(IOError) -> Int {
        try disk.state.withLock { (state) throws(IOError) -> Int in
            let node = try access(&state, "pread", mutating: false)
            let start = Int(position)
            guard start < node.current.count else { return 0 }
            let count = min(buffer.count, node.current.count - start)
            node.current.withUnsafeBytes { source in
                buffer.baseAddress!.copyMemory(from: source.baseAddress! + start, byteCount: count)
            }
            return count
        }
    }

    func write(_ bytes: UnsafeRawBufferPointer, at position: Int64) throws(IOError) -> Int {
        try disk.state.withLock { (state) throws(IOError) -> Int in
            if !writable { throw IOError("pwrite", path, .badFileDescriptor) }
            let node = try access(&state, "pwrite", mutating: true)
            var count = bytes.count
            if let index = state.faults.firstIndex(where: { if case .writeFails = $0 { return true }; return $0 == .shortWrite }) {
                let fault = state.faults.remove(at: index)
                if case .writeFails(let code) = fault { throw IOError("pwrite", path, code) }
                if count > 1 { count = Int.random(in: 1..<count, using: &state.random) }
            }
            let start = Int(position)
            if node.current.count < start + count {
                node.current.append(contentsOf: repeatElement(0, count: start + count - node.current.count))
            }
            node.current.replaceSubrange(start..<(start + count), with: bytes[0..<count])
            if count > 0 {
                for page in (start / SimulatedDisk.pageSize)...((start + count - 1) / SimulatedDisk.pageSize) { node.dirtyPages.insert(page) }
            }
            state.counters.writes += 1
            state.counters.writtenBytes += count
            return count
        }
    }

    func dataSync() throws(IOError) {
        try disk.state.withLock { (state) throws(IOError) in
            let node = try access(&state, "fdatasync", mutating: true)
            if let index = state.faults.firstIndex(of: .syncFails) {
                state.faults.remove(at: index)
                throw IOError("fdatasync", path, .ioError)
            }
            node.durable = node.current
            node.dirtyPages.removeAll()
            state.counters.dataSyncs += 1
        }
    }

    func truncate(to size: Int64) throws(IOError) {
        try disk.state.withLock { (state) throws(IOError) in
            if !writable { throw IOError("ftruncate", path, .badFileDescriptor) }
            let node = try access(&state, "ftruncate", mutating: true)
            let newSize = Int(size)
            let oldSize = node.current.count
            if newSize < oldSize {
                node.current.removeLast(oldSize - newSize)
            } else {
                node.current.append(contentsOf: repeatElement(0, count: newSize - oldSize))
            }
            let low = min(newSize, oldSize) / SimulatedDisk.pageSize
            let high = max(newSize, oldSize) / SimulatedDisk.pageSize
            for page in low...high { node.dirtyPages.insert(page) }
        }
    }

    func size() throws(IOError) -> Int64 {
        try disk.state.withLock { (state) throws(IOError) -> Int64 in
            Int64(try access(&state, "fstat", mutating: false).current.count)
        }
    }

    func close() throws(IOError) {
        // Closing has no effect on durability; a handle of an earlier "process" is already dead.
    }
}
