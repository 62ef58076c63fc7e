import Foundation
import LogFormat
import LogIO
import LogSimulation
import LogStorage
import Logging
import XCTest

/// A fresh directory under the system's temporary directory, removed at the end of the test.
func temporaryDirectory(_ test: XCTestCase) throws -> String {
    let path = NSTemporaryDirectory() + "lodestone-test-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
    return path
}

let quietLogger: Logger = {
    var logger = Logger(label: "lodestone.test")
    logger.logLevel = .critical
    return logger
}()

/// A small configuration that rolls segments often and checkpoints often.
func smallConfiguration() -> StorageConfiguration {
    var configuration = StorageConfiguration()
    configuration.segmentBytes = 8192
    configuration.groupWriteBytesMax = 4096
    configuration.indexIntervalBytes = 256
    configuration.recoveryCheckpointIntervalBytes = 1024
    configuration.batchLimits = BatchLimits(batchBytesMax: 2048)
    configuration.queuedBytesMax = 64 << 10
    configuration.queuedAppendCountMax = 256
    configuration.preallocationBytes = 2048
    return configuration
}

/// A one-record batch whose value is `text`, as a producer would send it.
func makeBatch(_ text: String, key: String = "resource", timestamp: Int64 = 1_764_000_000_000, compression: CompressionCodec = .none) -> [UInt8] {
    RecordBatch.make(values: [(Array(key.utf8), Array(text.utf8))], timestamp: timestamp, compression: compression).encoded()
}

/// The values of every record in `bytes` (whole batches back to back).
func recordValues(_ bytes: [UInt8]) throws -> [String] {
    var values: [String] = []
    var position = 0
    while position < bytes.count {
        let header = try bytes.withUnsafeBytes { try RecordBatchHeader.read(UnsafeRawBufferPointer(rebasing: $0[position...])) }
        let batch = try RecordBatch.decode(Array(bytes[position..<(position + header.totalSize)]))
        values += batch.records.map { String(decoding: $0.value ?? [], as: UTF8.self) }
        position += header.totalSize
    }
    return values
}

/// Appends synchronously on a simulated partition: submits, then runs the writer; the
/// append must be committed.
func appendAndRun(_ log: PartitionLog, _ executor: ManualExecutor, _ batch: [UInt8], ackMode: AckMode = .durable) throws -> AppendResult {
    let box = ResultBox()
    log.append(batch, ackMode: ackMode) { box.set($0) }
    executor.runAll()
    return try XCTUnwrap(box.value).get().committed()
}

/// Submits and runs the writer; returns the outcome (or throws the error).
func outcomeOf(_ log: PartitionLog, _ executor: ManualExecutor, _ batch: [UInt8], ackMode: AckMode = .durable) throws -> AppendOutcome {
    let box = ResultBox()
    log.append(batch, ackMode: ackMode) { box.set($0) }
    executor.runAll()
    return try XCTUnwrap(box.value, "the append was not answered").get()
}

struct NotCommitted: Error, CustomStringConvertible {
    var outcome: AppendOutcome
    var description: String { "expected committed, got \(outcome)" }
}

extension AppendOutcome {
    /// The offsets of a committed append; throws for any other outcome.
    func committed() throws -> AppendResult {
        guard case .committed(let result) = self else { throw NotCommitted(outcome: self) }
        return result
    }
}

final class ResultBox: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Result<AppendOutcome, StorageError>?
    private var count = 0
    func set(_ value: Result<AppendOutcome, StorageError>) {
        lock.withLock {
            stored = value
            count += 1
        }
    }
    var value: Result<AppendOutcome, StorageError>? { lock.withLock { stored } }
    /// How many times the completion ran (it must run once).
    var completions: Int { lock.withLock { count } }
}
