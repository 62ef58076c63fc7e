import LogFormat
import LogIO
import Logging
import Synchronization

/// LogStorage owns Lodestone's data on disk: a store is a data directory of topics, a
/// topic a fixed number of partitions, a partition a directory of segments written by one
/// group-commit writer (`PartitionLog`) and recovered on open (`PartitionRecovery`).
///
/// Layout of a data directory (Docs/format.md has every byte):
///
///     DATA/.lock                       exclusive lock of the process that has the store open
///     DATA/store.meta                  format version of the store
///     DATA/topics/NAME/topic.config    topic configuration (NAME with '/' as %2F)
///     DATA/topics/NAME/P/              partition P: segments and partition.state
///
/// The source of truth is the `.log` files and the configuration; index files are derived.
/// An open store holds an exclusive lock on its directory, so a second server or an
/// offline reader (`lodestone check`) cannot use it behind the holder's back.
public final class LogStore: Sendable {
    public struct Topic: Sendable {
        public let configuration: TopicConfiguration
        public let partitions: [PartitionLog]
    }

    public let directory: String
    let environment: StorageEnvironment
    /// The store's producer identities (design decision 8).
    public let producers: ProducerRegistry
    private let lock: any DirectoryLock
    private let topics: Mutex<[String: Topic]>
    /// Serializes topic creation (it does file I/O, so it is not done under `topics`).
    private let creation = Mutex(())

    static let metaFileName = "store.meta"
    static let metaMagic: UInt32 = 0x4C44_5354  // "LDST"
    static let formatVersion: UInt16 = 1

    var fileIO: any FileIO { environment.fileIO }

    private init(directory: String, environment: StorageEnvironment, producers: ProducerRegistry, lock: any DirectoryLock, topics: [String: Topic]) {
        self.directory = directory
        self.environment = environment
        self.producers = producers
        self.lock = lock
        self.topics = Mutex(topics)
    }

    var topicsDirectory: String { joinPath(directory, "topics") }

    /// Opens the store in `directory` (creating it when missing), taking its lock and
    /// opening and recovering every partition of every topic.
    public static func open(directory: String, environment: StorageEnvironment) throws(StorageError) -> LogStore {
        Limits.check()
        try environment.configuration.check()
        let fileIO = environment.fileIO
        let lock = try prepare(directory: directory, fileIO: fileIO)
        do {
            let producers = try ProducerRegistry.open(directory: directory, fileIO: fileIO, logger: environment.logger)
            var topics: [String: Topic] = [:]
            for name in try topicDirectoryNames(joinPath(directory, "topics"), fileIO: fileIO) {
                let topicDirectory = joinPath(directory, "topics", name)
                let topicConfiguration = try readTopicConfiguration(topicDirectory, fileIO: fileIO)
                var partitions: [PartitionLog] = []
                for index in 0..<topicConfiguration.partitionCount {
                    partitions.append(try PartitionLog.open(
                        directory: joinPath(topicDirectory, String(index)), topic: topicConfiguration, partition: index,
                        environment: environment, registry: producers))
                }
                topics[topicConfiguration.name] = Topic(configuration: topicConfiguration, partitions: partitions)
            }
            return LogStore(directory: directory, environment: environment, producers: producers, lock: lock, topics: topics)
        } catch {
            lock.release()
            throw error
        }
    }

    /// Creates the directory and its metadata when missing, and takes the lock.
    static func prepare(directory: String, fileIO: any FileIO) throws(StorageError) -> any DirectoryLock {
        do {
            try fileIO.makeDirectory(directory)
        } catch {
            throw StorageError.io(error, "creating the data directory")
        }
        let lock = try lockDirectory(directory, fileIO: fileIO)
        do {
            let metaPath = joinPath(directory, metaFileName)
            if fileIO.exists(metaPath) {
                let (version, _) = try ChecksummedFile.decode(try fileIO.readWholeFile(metaPath, bytesMax: 4096), magic: metaMagic, name: metaPath)
                if version != formatVersion {
                    throw StorageError(.invalidArgument, "\(metaPath): store format version \(version) is not the \(formatVersion) this build reads")
                }
            } else {
                try fileIO.makeDirectory(joinPath(directory, "topics"))
                try fileIO.syncDirectory(directory)
                try fileIO.writeFileAtomically(metaPath, ChecksummedFile.encode(magic: metaMagic, version: formatVersion, payload: []))
            }
            try fileIO.makeDirectory(joinPath(directory, "topics"))
            return lock
        } catch let error as StorageError {
            lock.release()
            throw error
        } catch let error as IOError {
            lock.release()
            throw StorageError.io(error, "preparing the data directory")
        } catch {
            lock.release()
            throw StorageError(.corruption, "\(error)")
        }
    }

    /// Takes the directory's exclusive lock, or says who might hold it.
    public static func lockDirectory(_ directory: String, fileIO: any FileIO) throws(StorageError) -> any DirectoryLock {
        do {
            return try fileIO.lockDirectory(directory)
        } catch {
            if error.errno == .wouldBlock || error.errno == .resourceTemporarilyUnavailable {
                throw StorageError(.locked, "\(directory) is in use by another process (it holds \(joinPath(directory, ".lock"))); stop it first")
            }
            throw StorageError.io(error, "locking the data directory")
        }
    }

    /// Topic directories, without interrupted creations (`.creating`), which are removed.
    static func topicDirectoryNames(_ topicsDirectory: String, fileIO: any FileIO) throws(StorageError) -> [String] {
        guard fileIO.exists(topicsDirectory) else { return [] }
        do {
            return try fileIO.list(topicsDirectory).filter { !$0.hasSuffix(".creating") }.sorted()
        } catch {
            throw StorageError.io(error, "listing topics")
        }
    }

    static func readTopicConfiguration(_ topicDirectory: String, fileIO: any FileIO) throws(StorageError) -> TopicConfiguration {
        let path = joinPath(topicDirectory, TopicConfiguration.fileName)
        let bytes: [UInt8]
        do {
            bytes = try fileIO.readWholeFile(path, bytesMax: Limits.configurationFileBytesMax)
        } catch {
            throw StorageError.io(error, "reading topic configuration")
        }
        let configuration = try TopicConfiguration.decode(bytes, path: path)
        let directoryName = String(topicDirectory.split(separator: "/").last ?? "")
        if TopicName.directoryName(for: configuration.name) != directoryName {
            throw StorageError(.corruption, "\(path) names topic \"\(configuration.name)\" but lies in directory \(directoryName)", path: path)
        }
        if !(1...Limits.topicPartitionCountMax).contains(configuration.partitionCount) {
            throw StorageError.corruption(path, "partition count \(configuration.partitionCount) is outside 1...\(Limits.topicPartitionCountMax)")
        }
        return configuration
    }

    // MARK: Topics

    /// Creates a topic with `partitionCount` partitions. The topic appears whole or not at
    /// all: it is built in `NAME.creating`, synced, then renamed into place.
    @discardableResult
    public func createTopic(
        name: String, partitionCount: Int, kind: TopicKind, polarityMap: [String: Int8]? = nil,
        stormIntervalMilliseconds: Int64? = nil, stormEnter: Int? = nil, stormExit: Int? = nil
    ) throws(StorageError) -> TopicConfiguration {
        try TopicName.validate(name)
        let proposed = TopicConfiguration(
            name: name, partitionCount: partitionCount, kind: kind, createdAt: 0, polarityMap: polarityMap,
            stormIntervalMilliseconds: stormIntervalMilliseconds, stormEnter: stormEnter, stormExit: stormExit)
        try proposed.checkPolarityMap()
        try proposed.checkStorm()
        if !(1...Limits.topicPartitionCountMax).contains(partitionCount) {
            throw StorageError(.invalidArgument, "partition count must be 1 to \(Limits.topicPartitionCountMax), got \(partitionCount)")
        }
        return try creation.withLock { (_) throws(StorageError) -> TopicConfiguration in
            let (exists, topicCount, partitionTotal) = topics.withLock { topics in
                (topics[name] != nil, topics.count, topics.values.reduce(0) { $0 + $1.configuration.partitionCount })
            }
            if exists { throw StorageError(.alreadyExists, "topic \"\(name)\" exists") }
            if topicCount >= Limits.storeTopicCountMax {
                throw StorageError(.limitReached, "the store holds \(topicCount) topics, the limit (\(Limits.storeTopicCountMax))")
            }
            if partitionTotal + partitionCount > Limits.storePartitionCountMax {
                throw StorageError(.limitReached, "\(partitionCount) more partitions would exceed the store's limit of \(Limits.storePartitionCountMax)")
            }
            var configuration = proposed
            configuration.createdAt = environment.clock.nowMilliseconds()
            let final = joinPath(topicsDirectory, TopicName.directoryName(for: name))
            try build(configuration, at: final)
            var partitions: [PartitionLog] = []
            for index in 0..<partitionCount {
                partitions.append(try PartitionLog.open(directory: joinPath(final, String(index)), topic: configuration, partition: index, environment: environment, registry: producers))
            }
            topics.withLock { $0[name] = Topic(configuration: configuration, partitions: partitions) }
            environment.logger.info("created topic", metadata: ["topic": "\(name)", "partitions": "\(partitionCount)", "kind": "\(kind.rawValue)"])
            return configuration
        }
    }

    private func build(_ configuration: TopicConfiguration, at final: String) throws(StorageError) {
        let building = final + ".creating"
        do {
            if fileIO.exists(building) { try removeTree(building) }
            try fileIO.makeDirectory(building)
            try fileIO.writeFileAtomically(joinPath(building, TopicConfiguration.fileName), configuration.encoded())
            for index in 0..<configuration.partitionCount {
                try fileIO.makeDirectory(joinPath(building, String(index)))
            }
            try fileIO.syncDirectory(building)
            try fileIO.rename(from: building, to: final)
            try fileIO.syncDirectory(topicsDirectory)
        } catch {
            throw StorageError.io(error, "creating topic \(configuration.name)")
        }
    }

    /// Removes a directory of files and directories one level deep at most per call.
    private func removeTree(_ path: String) throws(IOError) {
        for name in try fileIO.list(path) {
            let child = joinPath(path, name)
            if (try? fileIO.list(child)) != nil { try removeTree(child) } else { try fileIO.remove(child) }
        }
        try fileIO.removeDirectory(path)
    }

    public func topic(_ name: String) -> Topic? { topics.withLock { $0[name] } }

    public var topicConfigurations: [TopicConfiguration] {
        topics.withLock { $0.values.map(\.configuration).sorted { $0.name < $1.name } }
    }

    public func partition(topic name: String, index: Int) throws(StorageError) -> PartitionLog {
        guard let topic = topic(name) else { throw StorageError(.notFound, "no topic \"\(name)\"") }
        guard topic.partitions.indices.contains(index) else {
            throw StorageError(.notFound, "topic \"\(name)\" has partitions 0 to \(topic.partitions.count - 1), not \(index)")
        }
        return topic.partitions[index]
    }

    /// A producer identity (see `ProducerRegistry.initialize`), recorded durably on the
    /// store's I/O threads before it returns.
    public func initializeProducer(name: String?) async throws(StorageError) -> ProducerIdentity {
        let registry = producers
        let result = await withUnsafeContinuation { (continuation: UnsafeContinuation<Result<ProducerIdentity, StorageError>, Never>) in
            environment.executor.execute {
                continuation.resume(returning: Result { () throws(StorageError) in try registry.initialize(name: name) })
            }
        }
        return try result.get()
    }

    /// Closes every partition cleanly (see `PartitionLog.close`) and releases the lock.
    public func close() async throws(StorageError) {
        let all = topics.withLock { $0.values.flatMap(\.partitions) }
        var firstError: StorageError?
        for partition in all {
            do { try await partition.close() } catch { firstError = firstError ?? error }
        }
        producers.close()
        lock.release()
        if let firstError { throw firstError }
    }
}
