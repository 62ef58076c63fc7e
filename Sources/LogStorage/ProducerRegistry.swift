import LogFormat
import LogIO
import Logging
import Synchronization

/// A producer's identity: the id the store handed out (from 1; -1 means none) and the
/// epoch of this incarnation.
public struct ProducerIdentity: Equatable, Hashable, Sendable {
    public var producerId: Int64
    public var epoch: Int16

    public init(producerId: Int64, epoch: Int16) {
        self.producerId = producerId
        self.epoch = epoch
    }
}

/// The store's durable registry of producer identities (design decision 8): source of
/// truth, answered only after it is on disk.
///
/// Initialising with a name returns that name's id with the next epoch, which fences every
/// older incarnation (their batches carry a lower epoch); when the 16-bit epoch would wrap,
/// the name moves to a new id and the old id is retired. Initialising without a name
/// returns a new id, epoch 0. Ids are never reused.
///
/// File `DATA/producers.registry`: fixed slots of 512 bytes, one record each:
/// `u32 payload length, u32 CRC-32C of the payload, payload`, zeros to the slot's end,
/// where the payload is `u8 kind` (1 named, 2 anonymous, 3 retired), `i64 producer id`,
/// `i16 epoch`, `u16 name length`, name (UTF-8; empty unless named). Every init writes one
/// slot and fsyncs before it is answered, so only the last slot can be torn: an invalid
/// last slot (or a partial one) is cut; an invalid slot before it is corruption. Fixed
/// slots make that rule exact whatever a damaged length field says.
public final class ProducerRegistry: Sendable {
    public enum Status: Equatable, Sendable {
        /// Never handed out.
        case unknown
        /// Handed out without a name: epoch 0 for ever.
        case anonymous
        /// A named producer's current epoch: lower epochs are fenced.
        case named(epoch: Int16)
        /// A named producer that moved to a new id when its epoch wrapped: fenced.
        case retired
    }

    static let fileName = "producers.registry"
    static let slotBytes = 512

    private struct State {
        var byName: [String: ProducerIdentity] = [:]
        var named: [Int64: Int16] = [:]
        var retired = Set<Int64>()
        var nextId: Int64 = 1
        var fileSize: Int64 = 0
        var recordCount = 0
        /// Set by a failed write or fsync: no more inits until a restart (design decision 5).
        var failure: StorageError?
    }

    private let file: any StorageFile
    private let path: String
    private let state: Mutex<State>
    private let changes = Atomic<Int>(0)

    /// Moves whenever an init changes what `status` answers; readers may cache statuses
    /// while it stays the same (one atomic load instead of the registry's lock).
    public var generation: Int { changes.load(ordering: .acquiring) }

    private init(file: any StorageFile, path: String, state: State) {
        self.file = file
        self.path = path
        self.state = Mutex(state)
    }

    /// Opens (creating when missing) the registry in `directory`, cutting a torn last
    /// record and refusing corruption.
    public static func open(directory: String, fileIO: any FileIO, logger: Logger) throws(StorageError) -> ProducerRegistry {
        let path = joinPath(directory, fileName)
        do {
            let existed = fileIO.exists(path)
            let file = try fileIO.open(path, mode: .createOrOpen)
            if !existed {
                try file.dataSync()
                try fileIO.syncDirectory(directory)
            }
            let bytes = try file.read(count: Int(try file.size()), at: 0)
            var state = State()
            let end = try replay(bytes, into: &state, path: path)
            if end < bytes.count {
                logger.warning("truncated a torn producer registry record", metadata: ["file": "\(path)", "position": "\(end)", "droppedBytes": "\(bytes.count - end)"])
                try file.truncate(to: Int64(end))
                try file.dataSync()
            }
            state.fileSize = Int64(end)
            return ProducerRegistry(file: file, path: path, state: state)
        } catch let error as StorageError {
            throw error
        } catch let error as IOError {
            throw StorageError.io(error, "opening the producer registry")
        } catch {
            throw StorageError(.io, "\(error)")
        }
    }

    /// Checks a registry file's bytes without changing anything: the bytes where a torn
    /// last slot starts (nil when none), or the corruption error.
    static func verify(_ bytes: [UInt8], path: String) throws(StorageError) -> Int? {
        var state = State()
        let end = try replay(bytes, into: &state, path: path)
        return end < bytes.count ? end : nil
    }

    /// Replays the slots; returns where the valid ones end.
    private static func replay(_ bytes: [UInt8], into state: inout State, path: String) throws(StorageError) -> Int {
        var position = 0
        while position < bytes.count {
            guard let record = decodeRecord(bytes, at: position) else {
                if position + slotBytes >= bytes.count { return position }
                throw StorageError.corruption(path, position: Int64(position), "invalid record at byte \(position), not the last one (only the last can be torn)")
            }
            apply(record, to: &state)
            state.recordCount += 1
            position += slotBytes
        }
        return position
    }

    struct Entry {
        var kind: UInt8
        var identity: ProducerIdentity
        var name: String
    }

    private static func decodeRecord(_ bytes: [UInt8], at position: Int) -> Entry? {
        guard position + slotBytes <= bytes.count else { return nil }
        let length = Int(bytes[position..<(position + 4)].reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
        let crc = bytes[(position + 4)..<(position + 8)].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        guard length >= 13, 8 + length <= slotBytes else { return nil }
        let payload = Array(bytes[(position + 8)..<(position + 8 + length)])
        guard CRC32C.checksum(payload) == crc, [1, 2, 3].contains(payload[0]) else { return nil }
        func integer<T: FixedWidthInteger>(_: T.Type, _ at: Int) -> T {
            payload[at..<(at + MemoryLayout<T>.size)].reduce(T.zero) { ($0 << 8) | T($1) }
        }
        let nameLength = Int(integer(UInt16.self, 11))
        guard 13 + nameLength == length, let name = String(validating: payload[13...], as: UTF8.self) else { return nil }
        return Entry(kind: payload[0], identity: ProducerIdentity(producerId: integer(Int64.self, 1), epoch: integer(Int16.self, 9)), name: name)
    }

    static func encodeRecord(_ entry: Entry) -> [UInt8] {
        var payload: [UInt8] = [entry.kind]
        ByteWriter.writeInteger(entry.identity.producerId, to: &payload)
        ByteWriter.writeInteger(entry.identity.epoch, to: &payload)
        ByteWriter.writeInteger(UInt16(entry.name.utf8.count), to: &payload)
        payload.append(contentsOf: entry.name.utf8)
        var bytes: [UInt8] = []
        ByteWriter.writeInteger(UInt32(payload.count), to: &bytes)
        ByteWriter.writeInteger(CRC32C.checksum(payload), to: &bytes)
        bytes += payload
        return bytes + [UInt8](repeating: 0, count: slotBytes - bytes.count)
    }

    private static func apply(_ entry: Entry, to state: inout State) {
        let id = entry.identity.producerId
        state.nextId = max(state.nextId, id + 1)
        switch entry.kind {
        case 1:
            if let previous = state.byName[entry.name], previous.producerId != id {
                state.named[previous.producerId] = nil
                state.retired.insert(previous.producerId)
            }
            state.byName[entry.name] = entry.identity
            state.named[id] = entry.identity.epoch
        case 3:
            state.retired.insert(id)
        default:
            break
        }
    }

    // MARK: Using it

    /// A new identity: for a name, its id with the next epoch (fencing older incarnations),
    /// for none, a new id. Blocking: appends and fsyncs before returning; call it off the
    /// network and concurrency threads.
    public func initialize(name: String?) throws(StorageError) -> ProducerIdentity {
        if let name {
            let bytes = name.utf8.count
            if bytes < 1 || bytes > Limits.producerNameBytesMax || name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
                throw StorageError(.invalidArgument, "a producer name must be 1 to \(Limits.producerNameBytesMax) bytes without control characters")
            }
        }
        return try state.withLock { (state) throws(StorageError) -> ProducerIdentity in
            if let failure = state.failure { throw failure }
            var entry: Entry
            if let name {
                if let current = state.byName[name] {
                    let wraps = current.epoch == Int16.max
                    entry = Entry(kind: 1, identity: wraps ? ProducerIdentity(producerId: state.nextId, epoch: 0) : ProducerIdentity(producerId: current.producerId, epoch: current.epoch + 1), name: name)
                } else {
                    if state.byName.count >= Limits.producerNamesMax {
                        throw StorageError(.limitReached, "the producer registry holds \(state.byName.count) names, the limit (\(Limits.producerNamesMax))")
                    }
                    entry = Entry(kind: 1, identity: ProducerIdentity(producerId: state.nextId, epoch: 0), name: name)
                }
            } else {
                entry = Entry(kind: 2, identity: ProducerIdentity(producerId: state.nextId, epoch: 0), name: "")
            }
            let record = Self.encodeRecord(entry)
            do throws(IOError) {
                try file.writeAll(record, at: state.fileSize)
                try file.dataSync()
            } catch {
                state.failure = StorageError(.readOnly, "the producer registry takes no more inits after a failed write, until restart: \(error)")
                throw StorageError.io(error, "recording a producer in \(path)")
            }
            state.fileSize += Int64(record.count)
            state.recordCount += 1
            Self.apply(entry, to: &state)
            changes.add(1, ordering: .releasing)
            return entry.identity
        }
    }

    /// What the registry knows of a producer id.
    public func status(of producerId: Int64) -> Status {
        state.withLock { state in
            if state.retired.contains(producerId) { return .retired }
            if let epoch = state.named[producerId] { return .named(epoch: epoch) }
            return producerId >= 1 && producerId < state.nextId ? .anonymous : .unknown
        }
    }

    public var namedCount: Int { state.withLock { $0.byName.count } }

    public func close() {
        try? file.close()
    }
}
